// The family table: folder.ts decides a model's family from its config; everything family-specific is looked up here.
import type { ModelFamily } from '../folder.js';
import type { ExplainFamily } from './family.js';
import { vit } from './vit.js';
import { clip } from './clip.js';

export const FAMILIES: Readonly<Record<ModelFamily, ExplainFamily>> = { vit, clip };

export type { ExplainFamily, FamilyForward, GradientTarget, ScoreSubject } from './family.js';
