// The one place the default ORT thread count is written. Its own module with no imports, so the CLI can show it in
// --help without loading onnxruntime.

/** ORT intra-op threads per session when the user says nothing (`--threads`, HEED_THREADS): two use a second core
 *  and still leave a laptop responsive. */
export const DEFAULT_THREADS = 2;
