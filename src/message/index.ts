/**
 * Message analysis for ProcessMessage / CheckRecipients: see analyser.ts and types.ts.
 */
import { createReadStream } from 'node:fs';
import { MessageAnalyser } from './analyser.js';
import type { AnalyserOptions, AnalysisResult } from './types.js';

export { MessageAnalyser } from './analyser.js';
export type { AnalyserOptions, AnalysisResult, Attachment, AttachmentType, HeaderField, MimePart } from './types.js';

/** Analyses a message held in memory, or given as a sequence of chunks. */
export function analyseMessage(message: Uint8Array | Iterable<Uint8Array>, options?: AnalyserOptions): AnalysisResult {
  const a = new MessageAnalyser(options);
  if (message instanceof Uint8Array) a.write(message);
  else for (const chunk of message) a.write(chunk);
  return a.end();
}

/** Analyses a stream of chunks (e.g. a file being read). */
export async function analyseStream(stream: AsyncIterable<Uint8Array>, options?: AnalyserOptions): Promise<AnalysisResult> {
  const a = new MessageAnalyser(options);
  for await (const chunk of stream) a.write(chunk);
  return a.end();
}

/** Analyses a stored message file, reading it in chunks. */
export function analyseFile(path: string, options?: AnalyserOptions): Promise<AnalysisResult> {
  return analyseStream(createReadStream(path, { highWaterMark: 64 * 1024 }), options);
}
