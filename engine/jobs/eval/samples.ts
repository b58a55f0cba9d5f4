// The per-sample records of `heed eval`: one JSON line per (prompt, seed) appended to samples.jsonl as soon as the
// sample is done, so an interrupted run resumes where it stopped and the report is always recomputed from the file.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { HeedError } from '../../errors.js';

/** One subject of one run (plain or Attend-and-Excite). */
export interface SubjectRecord {
  word: string;
  text: string;
  colour?: string;
  /** Found in the image (by colour, or by CLIP similarity for non-Shapes prompts). */
  present: boolean;
  /** Share of the image its mask covers. */
  area: number;
  /** Cosine similarity of the image and the subject's own text (CLIP). */
  clip: number;
  /** Max of the word's DAAM map (plain runs; what the editor's warning reads). */
  maxAttention?: number;
  /** The predictor: maxAttention relative to the strongest SUBJECT (engine/attention/neglect.ts). */
  relative?: number;
  /** The editor's former predictor: relative to the strongest of ALL words ("a", "and", colours included). */
  relativeAllWords?: number;
  /** Shapes prompts, plain runs: the max of the subject's colour word's map, and relative to the strongest colour word
   *  among the subjects (a colour that lost the competition leaks into the other shape). */
  colourMaxAttention?: number;
  colourRelative?: number;
  /** Shapes prompts, plain runs: correlation of the colour word's map with its own noun's map minus the largest
   *  with another subject's noun map (< 0: the colour sits on the other shape). */
  bindingMargin?: number;
  /** Its two terms: correlation of the colour map with its own noun's map, and the largest with another noun's map. */
  colourOnOwn?: number;
  colourOnOther?: number;
  /** Pointing game and IoU of the subject word's map (plain runs, subject present). */
  pointing?: boolean;
  iou?: number;
  /** The same for the colour word (Shapes prompts). */
  colourPointing?: boolean;
  colourIou?: number;
}

export interface RunRecord {
  /** The image, relative to the output folder. */
  image: string;
  subjects: SubjectRecord[];
  /** Cosine similarity of the image and the full prompt (CLIP). */
  clipFull: number;
  /** Min over subjects of their similarity (the A&E paper's min-object similarity). */
  clipMinObject: number | null;
  ms: number;
}

export interface SampleRecord {
  key: string;
  prompt: string;
  seed: number;
  /** Subjects found by colour (Shapes grammar) or by CLIP. */
  by: 'colour' | 'clip';
  plain: RunRecord;
  /** Attend-and-Excite on the subject words from the same seed (prompts with two or more subjects). */
  excite?: RunRecord;
}

export function sampleKey(prompt: string, seed: number): string {
  return `${seed}\u0000${prompt}`;
}

/**
 * The records of a samples.jsonl. A last line cut short by an interruption is dropped (and the file rewritten without
 * it, so that appending continues on a clean line); an unreadable line elsewhere is an error naming the line.
 */
export function readSamples(path: string): SampleRecord[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  const out: SampleRecord[] = [];
  let cut = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    try {
      const r = JSON.parse(line) as SampleRecord;
      if (typeof r.key !== 'string' || typeof r.prompt !== 'string' || typeof r.seed !== 'number' || !r.plain) throw new Error('not a sample record');
      out.push(r);
    } catch (e) {
      const last = lines.slice(i + 1).every((l) => l.trim() === '');
      if (!last) throw new HeedError('invalid_input', `${path} line ${i + 1} is not a sample record (${(e as Error).message}); remove the line or start a new --out folder`, { field: 'resume' });
      cut = true;
    }
  }
  if (cut) writeFileSync(path, out.map((r) => JSON.stringify(r) + '\n').join(''));
  return out;
}

export function appendSample(path: string, r: SampleRecord): void {
  appendFileSync(path, JSON.stringify(r) + '\n');
}
