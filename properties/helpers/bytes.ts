/** Byte-stream helpers for the codec suites (RESP, frames, wire schemas). */

/**
 * Cut `data` at the given positions (taken modulo its length, so any numbers will do): the
 * pieces a socket might deliver.
 */
export const splitAt = (data: Buffer, cuts: ReadonlyArray<number>): Array<Buffer> => {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b)
  const pieces: Array<Buffer> = []
  let from = 0
  for (const p of [...points, data.length]) {
    pieces.push(Buffer.from(data.subarray(from, p)))
    from = p
  }
  return pieces
}
