/**
 * A free-list of equal-sized I/O buffers. Fresh allocations of >= 1 MiB are slow and erratic
 * here (glibc mmap/munmap per buffer), so hot paths borrow and return instead of allocating.
 */
export class BufferPool {
  private readonly idle: Buffer[] = [];

  constructor(
    readonly bufferSize: number = 1 << 20,
    readonly maxIdle: number = 16,
  ) {
    if (!Number.isInteger(bufferSize) || bufferSize <= 0) throw new RangeError(`bufferSize must be a positive integer, got ${bufferSize}`);
    if (!Number.isInteger(maxIdle) || maxIdle < 0) throw new RangeError(`maxIdle must be a non-negative integer, got ${maxIdle}`);
  }

  /** A buffer of exactly `bufferSize` bytes with undefined content. */
  acquire(): Buffer {
    // allocUnsafeSlow: a buffer of its own, never a slice of Node's shared 8 KiB slab
    return this.idle.pop() ?? Buffer.allocUnsafeSlow(this.bufferSize);
  }

  /**
   * Give a buffer back. Only whole buffers of this pool's size are kept (a view or a foreign
   * buffer is dropped for the GC); releasing the same buffer twice keeps it once.
   */
  release(buf: Buffer): void {
    if (buf.byteOffset !== 0 || buf.length !== this.bufferSize || buf.buffer.byteLength !== this.bufferSize) return;
    if (this.idle.length >= this.maxIdle || this.idle.includes(buf)) return;
    this.idle.push(buf);
  }

  /** Buffers currently idle in the pool. */
  get idleCount(): number {
    return this.idle.length;
  }
}

/** The default I/O size: 1 MiB positional reads/writes are 3-4x faster than 64 KiB ones here. */
export const IO_BUFFER_SIZE = 1 << 20;

let shared: BufferPool | undefined;

/** The process-wide pool of 1 MiB buffers. */
export function sharedPool(): BufferPool {
  shared ??= new BufferPool(IO_BUFFER_SIZE, 16);
  return shared;
}
