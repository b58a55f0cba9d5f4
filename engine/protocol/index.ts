// The Heed engine protocol, `heed/1`: every message between a client (the VS Code extension, a script) and
// `heed serve`, defined ONCE as zod schemas. The server validates every incoming message with them and the extension
// imports the same file for its types and to check what it receives, so the two can never drift apart.
//
// This module must stay free of Node-only imports (no `node:*`, no `ws`, no Buffer): the extension bundles it for its
// host and its webviews. Human documentation of every message: PROTOCOL.md at the repository root.
import { z } from 'zod';

export const PROTOCOL_VERSION = 'heed/1';

/** Default limit of one WebSocket message (both directions), announced in the hello result. */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** WebSocket close codes the server uses (1009 is the standard "Message Too Big"). */
export const CLOSE_CODES = {
  normal: 1000,
  goingAway: 1001,
  messageTooBig: 1009,
  policyViolation: 1008,
} as const;

// ---------------------------------------------------------------------------------------------------------------
// Building blocks

/** Client-chosen request id; every event about the request carries it. Unique among the connection's open requests. */
export const RequestId = z.string().min(1).max(64);

const ModelPath = z.string().min(1).max(4096);
const Prompt = z.string().max(10_000);
const FilePath = z.string().min(1).max(4096);
/** Base64 of a PNG (no data: prefix). */
const Base64 = z.string().max(64 * 1024 * 1024);

const Size = z.int().min(8).max(4096).refine((v) => v % 8 === 0, { message: 'must be a multiple of 8 (the VAE downsamples by 8)' });

/** What to keep of the cross-attention maps. `true` is the CLI's `--maps` (global per-token maps). */
export const MapsOptions = z.union([
  z.boolean(),
  z.strictObject({
    /** Also write each word's map at every denoising step ([steps, h, w] per word; a step slider's data). */
    perStep: z.boolean().optional(),
    /** Also write each word's map per cross-attention layer ([layers, h, w] per word and grid; a layer filter's data). */
    perLayer: z.boolean().optional(),
    /** Grid heights (e.g. [16, 32]) for perStep/perLayer; default: per step the Attend-and-Excite resolution (16 at
     *  512²), per layer every cross-attention layer. */
    resolutions: z.array(z.int().min(1).max(1024)).max(16).optional(),
    /** DAAM's own fixed output grid (64 or 96, see README "Attention maps"): word maps exactly as DAAM's code
     *  computes them (square images only); default: the latent grid. */
    daamGrid: z.int().min(1).max(1024).optional(),
  }),
]);
export type MapsOptions = z.infer<typeof MapsOptions>;

/** Attend-and-Excite options; every field but `subjects` defaults to the paper/diffusers value. */
export const ExciteOptions = z.strictObject({
  /** Words of the prompt, raw token indices (SOT = 0), or "auto" (the prompt's nouns). */
  subjects: z.union([z.literal('auto'), z.array(z.union([z.string().min(1).max(200), z.int().min(1).max(76)])).min(1).max(32)]),
  maxIterToAlter: z.int().min(0).max(1000).optional(),
  /** Loop index → threshold, e.g. {"0": 0.05, "10": 0.5, "20": 0.8}. */
  thresholds: z.record(z.string().regex(/^\d+$/, 'keys are loop indices'), z.number().min(0).max(1)).optional(),
  scaleFactor: z.number().min(0).max(1e4).optional(),
  maxRefinement: z.int().min(0).max(1000).optional(),
  /** Attention resolution the loss reads (16 for SD 1.x at 512²). */
  res: z.int().min(1).max(1024).optional(),
  smoothing: z.boolean().optional(),
  sigma: z.number().positive().max(100).optional(),
  kernel: z.int().min(1).max(31).optional(),
  /** The original repo's SD 2.x variant: softmax over the prompt's tokens only, up to EOT (CLI `--ae-sd2`). */
  sd2: z.boolean().optional(),
  /** Also run without guidance with the same seed and report both (CLI `--compare`). */
  compare: z.boolean().optional(),
  /** The loss: Attend-and-Excite's (default) or SynGen's binding loss, against attribute leakage (CLI `--ae-loss`). */
  method: z.enum(['attend-excite', 'syngen']).optional(),
  /** SynGen: a subject's modifiers, when the prompt's word order does not give them (CLI `--ae-modifiers car=red`). */
  modifiers: z.record(z.string().min(1).max(200), z.array(z.string().min(1).max(200)).min(1).max(16)).optional(),
});
export type ExciteOptions = z.infer<typeof ExciteOptions>;

/** Live previews during generation: a low-resolution PNG approximated from the latents (no VAE run). */
export const PreviewOptions = z.strictObject({
  /** Send a preview every N steps (0 = never). */
  every: z.int().min(0).max(1000),
  /** Longest side of the preview in pixels (default 64). */
  size: z.int().min(8).max(512).optional(),
});
export type PreviewOptions = z.infer<typeof PreviewOptions>;

// ---------------------------------------------------------------------------------------------------------------
// Requests (client → server). The first request of a connection must be `hello`.

export const HelloRequest = z.strictObject({
  type: z.literal('hello'),
  id: RequestId,
  /** Protocol versions the client speaks, e.g. ["heed/1"]. */
  protocols: z.array(z.string().min(1).max(32)).min(1).max(8),
  client: z.string().max(200).optional(),
});

export const TokenizeRequest = z.strictObject({
  type: z.literal('tokenize'),
  id: RequestId,
  /** A Stable Diffusion folder (its tokenizer/), a CLIP folder, or a tokenizer folder. */
  model: ModelPath,
  text: Prompt,
});

export const GenerateRequest = z.strictObject({
  type: z.literal('generate'),
  id: RequestId,
  model: ModelPath,
  prompt: Prompt,
  negativePrompt: Prompt.optional(),
  steps: z.int().min(1).max(1000).optional(),
  guidance: z.number().min(0).max(100).optional(),
  /** SDXL folders only: diffusers' guidance_rescale (CLI `--guidance-rescale`); 0 = off. */
  guidanceRescale: z.number().min(0).max(1).optional(),
  /** SDXL folders only: micro-conditioning in diffusers' order, (height, width) and (top, left) pixels. */
  sdxl: z.strictObject({
    originalSize: z.tuple([z.int().min(0).max(65536), z.int().min(0).max(65536)]).optional(),
    cropsCoordsTopLeft: z.tuple([z.int().min(0).max(65536), z.int().min(0).max(65536)]).optional(),
    targetSize: z.tuple([z.int().min(0).max(65536), z.int().min(0).max(65536)]).optional(),
  }).optional(),
  /** Scheduler name as the CLI's `--scheduler` accepts it (the engine reports unknown names). */
  scheduler: z.string().min(1).max(64).optional(),
  seed: z.int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  /** Initial latents: a `.npy` file on the server's machine (within the allowed folders when --models is set). */
  latents: FilePath.optional(),
  width: Size.optional(),
  height: Size.optional(),
  maps: MapsOptions.optional(),
  excite: ExciteOptions.optional(),
  preview: PreviewOptions.optional(),
  /** Also write the trace tensors (CLI `--trace`) into the job folder's trace/. */
  trace: z.boolean().optional(),
});

export const ExplainMethod = z.enum(['rollout', 'grad-rollout', 'chefer', 'heads', 'distance', 'transformer-attribution', 'partial-lrp', 'raw-attention', 'gradcam', 'attn-lrp']);
export type ExplainMethod = z.infer<typeof ExplainMethod>;

/** An image given by path (same machine) or inline (remote clients; counts against the message size limit). */
export const ImageInput = z.union([
  z.strictObject({ path: FilePath }),
  z.strictObject({ data: Base64, name: z.string().max(200).optional() }),
]);
export type ImageInput = z.infer<typeof ImageInput>;

const CHEFER_START_MESSAGE = "must be 'last', 'all' or a layer index from 0 (0 = the first block)";

export const ExplainRequest = z.strictObject({
  type: z.literal('explain'),
  id: RequestId,
  model: ModelPath,
  image: ImageInput,
  /** CLIP: texts to score and explain against the image. */
  texts: z.array(z.string().max(2000)).max(32).optional(),
  methods: z.array(ExplainMethod).min(1).max(10).optional(),
  classIndex: z.int().min(0).optional(),
  top: z.int().min(1).max(100).optional(),
  headFusion: z.enum(['mean', 'max', 'min']).optional(),
  discard: z.number().min(0).max(1).optional(),
  /** Rollout and gradient-rollout normalisation (CLI `--rollout-normalization`); default 'vit-explain'. */
  rolloutNormalization: z.enum(['vit-explain', 'rows']).optional(),
  /** Gradient-rollout variant (CLI `--grad-rollout`); default 'vit-explain'. */
  gradRollout: z.enum(['vit-explain', 'corrected']).optional(),
  /** First block of Chefer relevance (CLI `--chefer-start`); default 'all' for ViT, 'last' for CLIP. The engine
   *  checks an index against the model's layer count (error `invalid_input`). */
  cheferStart: z.union([z.enum(['last', 'all']), z.int().min(0, CHEFER_START_MESSAGE).max(1023, CHEFER_START_MESSAGE)], { error: CHEFER_START_MESSAGE }).optional(),
  /** Layer of the per-head CLS maps (CLI `--heads-layer`); negative counts from the end; default -1 (the last). */
  headsLayer: z.int().min(-1024).max(1023).optional(),
  /** attn-lrp: how relevance crosses the attention (CLI `--attn-lrp-attention`): 'cp' (CP-LRP, LXT's choice for ViTs;
   *  default) or 'attnlrp' (AttnLRP's softmax and uniform matrix-product rules). */
  attnLrpAttention: z.enum(['cp', 'attnlrp']).optional(),
  /** Compare the map methods side by side (CLI `--compare`): every one that applies, or those of `methods`, each timed
   *  on its own; the result's `explain` is then compare.json. Takes `classIndex` (not `top`) and at most one text. */
  compare: z.boolean().optional(),
  /** With `compare`: 'normalized' (each map min–max scaled; default) or 'shared' (raw values on one range). */
  compareScale: z.enum(['normalized', 'shared']).optional(),
  trace: z.boolean().optional(),
});

export const CancelRequest = z.strictObject({
  type: z.literal('cancel'),
  id: RequestId,
  /** The id of the generate/explain request to cancel. */
  target: RequestId,
});

export const ListModelsRequest = z.strictObject({
  type: z.literal('listModels'),
  id: RequestId,
});

export const StatusRequest = z.strictObject({
  type: z.literal('status'),
  id: RequestId,
});

/** Streams a file of a job folder (e.g. a result's .npy) as one binary frame — for clients on another machine. */
export const FetchRequest = z.strictObject({
  type: z.literal('fetch'),
  id: RequestId,
  path: FilePath,
});

export const Request = z.discriminatedUnion('type', [
  HelloRequest,
  TokenizeRequest,
  GenerateRequest,
  ExplainRequest,
  CancelRequest,
  ListModelsRequest,
  StatusRequest,
  FetchRequest,
]);
export type Request = z.infer<typeof Request>;
export type HelloRequest = z.infer<typeof HelloRequest>;
export type TokenizeRequest = z.infer<typeof TokenizeRequest>;
export type GenerateRequest = z.infer<typeof GenerateRequest>;
export type ExplainRequest = z.infer<typeof ExplainRequest>;
export type CancelRequest = z.infer<typeof CancelRequest>;
export type ListModelsRequest = z.infer<typeof ListModelsRequest>;
export type StatusRequest = z.infer<typeof StatusRequest>;
export type FetchRequest = z.infer<typeof FetchRequest>;
export type RequestType = Request['type'];
export const REQUEST_TYPES = ['hello', 'tokenize', 'generate', 'explain', 'cancel', 'listModels', 'status', 'fetch'] as const satisfies readonly RequestType[];
/** Requests that become queued jobs (they get `accepted`, `progress`, then `result` or `error`). */
export const JOB_TYPES = ['generate', 'explain'] as const;
export type JobType = (typeof JOB_TYPES)[number];

// ---------------------------------------------------------------------------------------------------------------
// Events (server → client). Each request ends with exactly one `result` or `error` carrying its id.

export const ErrorCode = z.enum([
  'bad_json', // the text frame is not JSON
  'invalid_message', // JSON, but fails the schema (wrong field type, unknown field, missing field); `field` names it
  'unknown_type', // `type` is not a request this protocol knows
  'binary_not_supported', // clients send text frames only
  'hello_required', // a request before `hello`
  'unsupported_protocol', // none of the hello's protocols is spoken here
  'duplicate_id', // an open request of this connection already has that id
  'model_not_allowed', // the path resolves outside every --models folder
  'model_not_found', // the path does not exist
  'model_invalid', // it exists but is not a model folder Heed can load (message says what is missing)
  'file_not_allowed', // fetch/latents/image path outside the allowed folders
  'file_not_found',
  'file_too_large',
  'not_found', // cancel target unknown or already finished
  'queue_full', // the model's queue is at its bound; retry later
  'cancelled', // the job was cancelled (by `cancel`)
  'worker_crashed', // the worker running the job died; the server restarted it
  'invalid_input', // the engine rejected an option (e.g. unknown scheduler, subject not in prompt); `field` names it
  'job_failed', // the engine failed for another reason (message says why)
  'shutting_down',
  'too_many_fetches', // this connection already has the allowed number of fetches in flight; wait for one to end
  'quota_exceeded', // the output folder holds more than the server's --max-out-mb; free space or set --keep-jobs
  'internal',
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

export const ErrorEvent = z.strictObject({
  type: z.literal('error'),
  /** The request's id; absent when the message had none (bad JSON, no id). */
  id: RequestId.optional(),
  code: ErrorCode,
  message: z.string(),
  /** Dotted path of the offending field, e.g. "excite.subjects.0". */
  field: z.string().optional(),
});
export type ErrorEvent = z.infer<typeof ErrorEvent>;

export const AcceptedEvent = z.strictObject({
  type: z.literal('accepted'),
  id: RequestId,
  /** Server-wide job id; also the name of the job's output folder. */
  jobId: z.string(),
  /** Jobs ahead of this one in its model's queue (0 = starts as soon as a worker is free). */
  position: z.int().min(0),
  /** The folder the job writes its files to (on the server's machine). */
  outDir: z.string(),
});
export type AcceptedEvent = z.infer<typeof AcceptedEvent>;

export const Phase = z.enum(['queued', 'loading', 'encoding', 'denoising', 'refining', 'decoding', 'explaining', 'writing']);
export type Phase = z.infer<typeof Phase>;

export const PngPreview = z.strictObject({
  width: z.int().positive(),
  height: z.int().positive(),
  /** Base64 PNG. */
  png: Base64,
});
export type PngPreview = z.infer<typeof PngPreview>;

export const ProgressEvent = z.strictObject({
  type: z.literal('progress'),
  id: RequestId,
  jobId: z.string(),
  phase: Phase,
  /** 1-based step within the phase (denoising: the scheduler step); 0 before the first. */
  step: z.int().min(0),
  total: z.int().min(0),
  /** Estimated milliseconds until the job's end, from the mean step time so far. */
  etaMs: z.number().min(0).optional(),
  preview: PngPreview.optional(),
  /** Attend-and-Excite: current loss and each subject's score. */
  loss: z.number().optional(),
  scores: z.record(z.string(), z.number()).optional(),
  /** Refinement iterations run at this step (phase `refining`). */
  iteration: z.int().min(0).optional(),
  /** Attend-and-Excite with `compare`: which of the two runs this is (the plain one comes first). */
  run: z.enum(['plain', 'guided']).optional(),
});
export type ProgressEvent = z.infer<typeof ProgressEvent>;

/** A file the job wrote, on the server's machine; `fetch` it when the client is elsewhere. */
export const FileRef = z.strictObject({
  path: z.string(),
  bytes: z.int().min(0),
});
export type FileRef = z.infer<typeof FileRef>;

export const WordInfo = z.strictObject({
  word: z.string(),
  start: z.int().min(0),
  end: z.int().min(0),
  tokenIndices: z.array(z.int().min(0)),
});
export type WordInfo = z.infer<typeof WordInfo>;

/** A stack of one word's maps on one grid: a float32 .npy [n, height, width]. */
export const MapStack = z.strictObject({
  height: z.int().positive(),
  width: z.int().positive(),
  npy: FileRef,
});
export type MapStack = z.infer<typeof MapStack>;

export const TokenMap = z.strictObject({
  /** The word (or token) this map is for. */
  word: z.string(),
  tokenIndices: z.array(z.int().min(0)),
  /** Max of the map before display normalisation (A&E-style neglect indicator). */
  maxAttention: z.number().optional(),
  png: FileRef.optional(),
  npy: FileRef.optional(),
  /** maps.perStep: per resolution, the word's map at every UNet call ([calls, h, w]; calls listed in stepMaps). */
  perStep: z.array(MapStack).optional(),
  /** maps.perLayer: per grid size, the word's map per layer ([layers, h, w]; layer names in layerMaps). */
  perLayer: z.array(MapStack).optional(),
});
export type TokenMap = z.infer<typeof TokenMap>;

const JsonValue: z.ZodType<unknown> = z.unknown();

export const GenerateResult = z.strictObject({
  kind: z.literal('generate'),
  jobId: z.string(),
  outDir: z.string(),
  image: z.strictObject({ file: FileRef, width: z.int().positive(), height: z.int().positive(), preview: PngPreview.optional() }),
  maps: z.array(TokenMap),
  /** Grid of all token maps, when maps were asked for. */
  mapsGrid: FileRef.optional(),
  /** What the perStep stacks hold: per resolution, the timestep of each UNet call. */
  stepMaps: z.array(z.strictObject({ height: z.int().positive(), width: z.int().positive(), calls: z.int().min(0), timesteps: z.array(z.number()) })).optional(),
  /** What the perLayer stacks hold: per grid size, the module path of each plane. */
  layerMaps: z.array(z.strictObject({ height: z.int().positive(), width: z.int().positive(), layers: z.array(z.string()) })).optional(),
  /** Every file the job wrote (relative paths resolved against outDir). */
  files: z.array(FileRef),
  /** The content of the job's report.json (as the CLI writes it). */
  report: JsonValue,
  /** The content of excite.json when Attend-and-Excite ran. */
  excite: JsonValue.optional(),
  timingsMs: z.record(z.string(), z.number()),
});
export type GenerateResult = z.infer<typeof GenerateResult>;

export const ExplainResult = z.strictObject({
  kind: z.literal('explain'),
  jobId: z.string(),
  outDir: z.string(),
  files: z.array(FileRef),
  /** The content of the job's explain.json (as the CLI writes it); with `compare: true`, of its compare.json. */
  explain: JsonValue,
  /** True when the request asked for `compare` (then `explain` is compare.json). */
  compare: z.boolean().optional(),
  timingsMs: z.record(z.string(), z.number()),
});
export type ExplainResult = z.infer<typeof ExplainResult>;

export const TokenizeResult = z.strictObject({
  kind: z.literal('tokenize'),
  /** Padded to maxLength: SOT, tokens, EOT, padding. */
  ids: z.array(z.int()),
  tokens: z.array(z.string()),
  /** Real positions SOT..EOT inclusive. */
  length: z.int().min(0),
  maxLength: z.int().positive(),
  truncated: z.boolean(),
  droppedWords: z.array(z.string()),
  warning: z.string().optional(),
  words: z.array(WordInfo),
  /**
   * SDXL folders: the same prompt through tokenizer_2 (its own window; the second text encoder sees only what fits).
   * The positions above (maps, A&E subjects) are the first tokenizer's.
   */
  second: z.strictObject({
    length: z.int().min(0),
    maxLength: z.int().positive(),
    truncated: z.boolean(),
    droppedWords: z.array(z.string()),
    warning: z.string().optional(),
  }).optional(),
});
export type TokenizeResult = z.infer<typeof TokenizeResult>;

export const ModelKind = z.enum(['stable-diffusion', 'vit', 'clip', 'unknown']);
export type ModelKind = z.infer<typeof ModelKind>;

export const ModelInfo = z.strictObject({
  path: z.string(),
  name: z.string(),
  kind: ModelKind,
  bytes: z.int().min(0),
});
export type ModelInfo = z.infer<typeof ModelInfo>;

export const ListModelsResult = z.strictObject({
  kind: z.literal('listModels'),
  /** The --models folders; empty means any folder on the machine may be loaded. */
  roots: z.array(z.string()),
  models: z.array(ModelInfo),
});
export type ListModelsResult = z.infer<typeof ListModelsResult>;

export const WorkerStatus = z.strictObject({
  index: z.int().min(0),
  busy: z.boolean(),
  jobId: z.string().optional(),
  model: z.string().optional(),
  restarts: z.int().min(0),
  cachedModels: z.array(z.string()),
  cacheBytes: z.int().min(0),
});
export type WorkerStatus = z.infer<typeof WorkerStatus>;

export const StatusResult = z.strictObject({
  kind: z.literal('status'),
  protocol: z.string(),
  uptimeMs: z.number().min(0),
  workers: z.array(WorkerStatus),
  /** Queued (not yet running) jobs per model path. */
  queues: z.record(z.string(), z.int().min(0)),
  queueLimit: z.int().positive(),
  /** This connection's open jobs (request ids). */
  yourJobs: z.array(z.strictObject({ id: RequestId, jobId: z.string(), state: z.enum(['queued', 'running']) })),
  connections: z.int().min(0),
});
export type StatusResult = z.infer<typeof StatusResult>;

export const HelloResult = z.strictObject({
  kind: z.literal('hello'),
  protocol: z.string(),
  server: z.strictObject({ name: z.string(), version: z.string(), pid: z.int() }),
  limits: z.strictObject({ maxMessageBytes: z.int().positive(), queueLimit: z.int().positive(), maxFetchBytes: z.int().positive() }),
  /** The server's output folder; job folders are its jobs/<jobId>. */
  outDir: z.string(),
});
export type HelloResult = z.infer<typeof HelloResult>;

export const CancelResult = z.strictObject({
  kind: z.literal('cancel'),
  target: RequestId,
  /** `queued`: removed from the queue; `running`: the worker stops at the next step boundary. */
  was: z.enum(['queued', 'running']),
});
export type CancelResult = z.infer<typeof CancelResult>;

export const FetchResult = z.strictObject({
  kind: z.literal('fetch'),
  path: z.string(),
  bytes: z.int().min(0),
  mime: z.string(),
});
export type FetchResult = z.infer<typeof FetchResult>;

export const ResultPayload = z.discriminatedUnion('kind', [
  HelloResult,
  TokenizeResult,
  GenerateResult,
  ExplainResult,
  CancelResult,
  ListModelsResult,
  StatusResult,
  FetchResult,
]);
export type ResultPayload = z.infer<typeof ResultPayload>;

export const ResultEvent = z.strictObject({
  type: z.literal('result'),
  id: RequestId,
  result: ResultPayload,
});
export type ResultEvent = z.infer<typeof ResultEvent>;

export const ServerEvent = z.discriminatedUnion('type', [ErrorEvent, AcceptedEvent, ProgressEvent, ResultEvent]);
export type ServerEvent = z.infer<typeof ServerEvent>;

// ---------------------------------------------------------------------------------------------------------------
// Binary frames (server → client only): the bytes of a `fetch`. Layout: u32 little-endian header length, the header
// as UTF-8 JSON {id, path, bytes, mime}, then the file's bytes. Self-describing so a client never has to rely on
// frame order to know which request a frame answers.

export const BinaryHeader = z.strictObject({ id: RequestId, path: z.string(), bytes: z.int().min(0), mime: z.string() });
export type BinaryHeader = z.infer<typeof BinaryHeader>;

export function encodeBinaryFrame(header: BinaryHeader, payload: Uint8Array): Uint8Array {
  const head = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(4 + head.length + payload.length);
  new DataView(out.buffer).setUint32(0, head.length, true);
  out.set(head, 4);
  out.set(payload, 4 + head.length);
  return out;
}

export function decodeBinaryFrame(frame: Uint8Array): { header: BinaryHeader; payload: Uint8Array } {
  if (frame.length < 4) throw new Error(`binary frame of ${frame.length} bytes is too short for its header length`);
  const len = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(0, true);
  if (4 + len > frame.length) throw new Error(`binary frame header length ${len} exceeds the frame (${frame.length} bytes)`);
  const header = BinaryHeader.parse(JSON.parse(new TextDecoder().decode(frame.subarray(4, 4 + len))));
  return { header, payload: frame.subarray(4 + len) };
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers shared by both ends

/** Turns zod issues into the `field` + message of an `invalid_message` error (first issue; the rest summarised). */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): { field?: string; message: string } {
  const first = issues[0];
  if (!first) return { message: 'invalid message' };
  let path = first.path.map(String);
  let text = first.message;
  if (first.code === 'unrecognized_keys') {
    path = [...path, first.keys[0] ?? ''];
    text = `unknown field${first.keys.length > 1 ? 's' : ''} ${first.keys.map((k) => `"${k}"`).join(', ')} (this protocol rejects fields it does not define)`;
  }
  const field = path.length ? path.join('.') : undefined;
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
  return { field, message: `${field ? `${field}: ` : ''}${text}${more}` };
}

/** A readable reason for a WebSocket close code a client may see from this server. */
export function describeClose(code: number, reason = ''): string {
  if (code === CLOSE_CODES.messageTooBig) return `the server closed the connection: a message exceeded its size limit (close code 1009)${reason ? `: ${reason}` : ''}`;
  if (code === CLOSE_CODES.goingAway) return `the server is shutting down${reason ? `: ${reason}` : ''}`;
  if (code === CLOSE_CODES.policyViolation) return `the server closed the connection: ${reason || 'protocol violation'}`;
  return `connection closed (code ${code}${reason ? `, ${reason}` : ''})`;
}
