// The "may be neglected" predictor: which subjects of a prompt got too little cross-attention in a run. One pure,
// dependency-free function shared by the editor (extension/src/core/tokens.ts, bundled by esbuild) and by
// `heed eval`, which measures it as a predictor of "subject absent from the image" (engine/jobs/eval) and chose
// the default threshold from that measurement.
//
// Only SUBJECTS compete: a subject's score is its max attention divided by the largest among the subjects. Comparing
// with every word (as the editor did before) lets "a", "and" or a colour set the scale; their max attention says
// nothing about whether a thing is drawn, and it made the warning's threshold depend on the prompt's phrasing.

/** A word's max attention in a run (TokenMap.maxAttention: the max of its DAAM word map). */
export interface WordMaxAttention {
  word: string;
  maxAttention: number;
}

export interface SubjectAttention extends WordMaxAttention {
  /** maxAttention divided by the largest among the subjects (1 = the most attended subject). */
  relative: number;
}

/**
 * Default threshold on `relative`: a subject under it is flagged. From `heed eval` on the first (under-trained) Shapes
 * models, 24 pair prompts × 2 seeds (README, "Evaluation"): no threshold reaches the target recall 0.8 there, because
 * most absent subjects are absent together with the other one, and the strongest subject is never flagged; 0.65 is
 * where the precision peaks (0.70 at recall 0.32; 61 % of the subjects were absent). Re-measure with the retrained
 * models: the rule is report.json → diagnosis.subjects.chosen (recall ≥ 0.8, best precision).
 */
export const DEFAULT_NEGLECT_THRESHOLD = 0.65;

/** Words that rarely carry a subject. */
const FUNCTION_WORDS = new Set(
  ('a an the and or but of on in at to with without by for from into onto over under above below near next beside ' +
    'behind is are was were be being been it its this that these those his her their my your our very some one two ' +
    'three photo picture image painting').split(' '),
);

/** Attributes that describe a subject rather than being one (colours, sizes, places in the picture). */
const ATTRIBUTE_WORDS = new Set(
  ('red green blue yellow orange purple pink brown black white gray grey golden silver dark light bright pale ' +
    'big small large tiny huge little tall short long left right top bottom middle center centre').split(' '),
);

export function isFunctionWord(word: string): boolean {
  return FUNCTION_WORDS.has(word.toLowerCase()) || !/\p{L}/u.test(word);
}

/** A word that may name a subject when nobody said which words are subjects: not a function word or an attribute. */
export function isSubjectCandidate(word: string): boolean {
  return !isFunctionWord(word) && !ATTRIBUTE_WORDS.has(word.toLowerCase());
}

/**
 * The subjects' attention relative to the strongest subject. `subjects` names them (case-insensitive, e.g. the
 * block's `excite:` words or A&E's subjects); without it, every subject candidate among the words. A word listed
 * twice counts once (its first occurrence); a non-finite or negative max never counts as the strongest.
 */
export function subjectAttention(words: readonly WordMaxAttention[], subjects?: readonly string[]): SubjectAttention[] {
  const wanted = subjects ? new Set(subjects.map((s) => s.toLowerCase())) : undefined;
  const seen = new Set<string>();
  const picked: WordMaxAttention[] = [];
  for (const w of words) {
    const key = w.word.toLowerCase();
    if (seen.has(key)) continue;
    if (wanted ? !wanted.has(key) : !isSubjectCandidate(w.word)) continue;
    if (!Number.isFinite(w.maxAttention)) continue;
    seen.add(key);
    picked.push(w);
  }
  const top = Math.max(0, ...picked.map((w) => w.maxAttention));
  return picked.map((w) => ({ word: w.word, maxAttention: w.maxAttention, relative: top > 0 ? w.maxAttention / top : 0 }));
}

/** Subjects whose relative attention is under `threshold` ("may be neglected"). */
export function neglectedSubjects(words: readonly WordMaxAttention[], threshold: number = DEFAULT_NEGLECT_THRESHOLD, subjects?: readonly string[]): SubjectAttention[] {
  return subjectAttention(words, subjects).filter((s) => s.relative < threshold);
}
