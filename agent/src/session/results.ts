import type { SmartcopyError } from '@smartcopy/protocol';

/** The wire form (ErrorInfo) of an error. */
export function errorInfo(e: SmartcopyError): { code: number; codeName: string; message: string; path: Buffer } {
  return { code: e.wireCode, codeName: e.code, message: e.message, path: Buffer.from(e.path ?? '') };
}

export function displayOf(p: Uint8Array): string {
  return Buffer.from(p.buffer, p.byteOffset, p.byteLength).toString('utf8');
}

export function resultOk(fileId: number, bytes: number): { fileId: number; ok: true; bytesWritten: number } {
  return { fileId, ok: true, bytesWritten: bytes };
}

export function resultError(fileId: number, err: SmartcopyError): { fileId: number; ok: false; error: ReturnType<typeof errorInfo> } {
  return { fileId, ok: false, error: errorInfo(err) };
}

/** A RESULT as the receiver produces it (the schema's Result, fields optional). */
export interface ResultInit {
  fileId?: number;
  ok: boolean;
  error?: ReturnType<typeof errorInfo>;
  offset?: number;
  bytesWritten?: number;
  requestId?: number;
}
