/**
 * Growable read buffers for the incremental decoders (RESP on the client port, frames between
 * nodes). One rule for both: compact in place only when at least half the buffer would then be
 * free, otherwise double, so that copying stays amortized O(1) per byte received.
 */

export const BUFFER_BYTES_INITIAL = 16 * 1024
/** A buffer grown past this (by one large value) is dropped once drained. */
export const BUFFER_BYTES_RETAINED_MAX = 1024 * 1024

/**
 * A buffer holding the unread bytes `buf[start, end)` at its start with room for `extra` more:
 * `buf` itself (compacted) or a larger copy. The unread bytes then lie at [0, end - start).
 */
export const reserve = (buf: Buffer, start: number, end: number, extra: number): Buffer => {
  const unread = end - start
  const needed = unread + extra
  if (needed * 2 <= buf.length) {
    buf.copy(buf, 0, start, end)
    return buf
  }
  const grown = Buffer.allocUnsafe(Math.max(needed * 2, BUFFER_BYTES_INITIAL))
  buf.copy(grown, 0, start, end)
  return grown
}
