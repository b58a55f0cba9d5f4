"""Builds the Shapes tokenizer: CLIP's BPE layout with a small vocabulary.

Vocabulary order follows openai/CLIP's SimpleTokenizer: the 256 byte-level characters, the same 256 with `</w>`,
one token per merge, then `<|startoftext|>` and `<|endoftext|>`. The merges are only those that build the grammar's
words (plus "and", "a"), so every grammar word is ONE token and any other word still tokenizes, into smaller
pieces (byte-level base tokens never fail). Files: vocab.json, merges.txt (`#version: 0.2`), tokenizer_config.json and
special_tokens_map.json written by transformers' CLIPTokenizer.save_pretrained (pad = `<|endoftext|>`,
model_max_length 77, as in Stable Diffusion 1.x).
"""
import json
import os

import env  # noqa: F401  (upstream libraries on sys.path)
from transformers.models.clip.tokenization_clip import bytes_to_unicode

import world

WORDS = ["a", "and"] + world.COLOURS + world.SHAPES
MAX_LENGTH = 77


def _bpe(word, ranks):
    """Plain CLIP BPE of one word (a list of base symbols, the last one carrying </w>)."""
    parts = list(word)
    while len(parts) > 1:
        pairs = [(ranks.get((parts[i], parts[i + 1]), 1e9), i) for i in range(len(parts) - 1)]
        rank, _ = min(pairs)
        if rank == 1e9:
            break
        a, b = min((p for p in pairs if p[0] == rank))[1], None
        first, second = parts[a], parts[a + 1]
        merged = []
        i = 0
        while i < len(parts):
            if i < len(parts) - 1 and parts[i] == first and parts[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return parts


def build_merges(words=WORDS):
    """Adds merges until every word is a single token; earlier words are re-checked after each addition."""
    merges = []
    ranks = {}
    changed = True
    while changed:
        changed = False
        for w in words:
            symbols = list(w[:-1]) + [w[-1] + "</w>"]
            parts = _bpe(symbols, ranks)
            while len(parts) > 1:
                pair = (parts[0], parts[1])
                ranks[pair] = len(merges)
                merges.append(pair)
                changed = True
                parts = _bpe(symbols, ranks)
    return merges


def build_vocab(merges):
    base = list(bytes_to_unicode().values())
    vocab = base + [v + "</w>" for v in base]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}


def write(folder):
    from transformers import CLIPTokenizer
    os.makedirs(folder, exist_ok=True)
    merges = build_merges()
    vocab = build_vocab(merges)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tok = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"),
                        pad_token="<|endoftext|>", model_max_length=MAX_LENGTH)
    tok.save_pretrained(folder)
    return load(folder)


def load(folder):
    from transformers import CLIPTokenizer
    return CLIPTokenizer.from_pretrained(folder)


if __name__ == "__main__":
    import sys
    folder = sys.argv[1] if len(sys.argv) > 1 else "/tmp/shapes-tokenizer"
    tok = write(folder)
    print("vocab size", len(tok), "bos", tok.bos_token_id, "eos", tok.eos_token_id, "pad", tok.pad_token_id)
    for text in ["a red circle and a blue triangle", "a yellow square", "a purple hexagon"]:
        ids = tok(text).input_ids
        print(text, ids, tok.convert_ids_to_tokens(ids))
