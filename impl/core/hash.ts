/**
 * Ring hashing: a stable map from key bytes to a ring position in [0, 2^52).
 *
 * Position = the 32 bits of MurmurHash3_x86_32(bytes, seed 0) as the high part, followed by the
 * top 20 bits of MurmurHash3_x86_32(bytes, seed 0x9747b28c) as the low part. Both halves are the
 * public, widely implemented MurmurHash3 (Appleby), so anyone can recompute a position in any
 * language; the published vectors live in spec/hash-vectors.json and are checked by
 * properties/hash.test.ts (RING-1).
 *
 * Positions fit a double exactly (below 2^52), so ring arithmetic stays in plain numbers.
 * Keys are byte strings: one JS char per byte (latin1), exactly as they arrive over RESP.
 *
 * Deliberately not here: cryptographic strength. An attacker who can choose keys can build hot
 * spots; use a keyed hash if that matters.
 * Owns: nothing; pure functions. Must not: depend on the platform (byte order, locale, a native
 * crypto module): positions must equal the published vectors in every language.
 *
 */

/** Number of distinct ring positions: 2^52. */
export const RING_SIZE = 2 ** 52

const SEED_HIGH = 0
const SEED_LOW = 0x9747b28c

// MurmurHash3_x86_32's three steps, shared by the byte-string form below and the word form
// the Merkle trees use (impl/core/merkle.ts).

const C1 = 0xcc9e2d51
const C2 = 0x1b873593

/** Scramble one 32-bit block (also the tail, zero-padded). */
export const murmur3Scramble = (k: number): number => {
  k = Math.imul(k, C1)
  k = (k << 15) | (k >>> 17)
  return Math.imul(k, C2)
}

/** Fold one scrambled block into the running hash. */
export const murmur3Round = (h: number, k: number): number => {
  h ^= k
  h = (h << 13) | (h >>> 19)
  return (Math.imul(h, 5) + 0xe6546b64) | 0
}

/** Finish: fold in the length in bytes and avalanche. */
export const murmur3Final = (h: number, length: number): number => {
  h ^= length
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** MurmurHash3_x86_32 over the bytes of a byte string (char codes 0..255). */
export const murmur3 = (bytes: string, seed: number): number => {
  const length = bytes.length
  const blocks = length - (length % 4)
  let h = seed >>> 0
  for (let i = 0; i < blocks; i += 4) {
    const k =
      (bytes.charCodeAt(i) & 0xff) |
      ((bytes.charCodeAt(i + 1) & 0xff) << 8) |
      ((bytes.charCodeAt(i + 2) & 0xff) << 16) |
      ((bytes.charCodeAt(i + 3) & 0xff) << 24)
    h = murmur3Round(h, murmur3Scramble(k))
  }
  const tail = length & 3
  if (tail > 0) {
    let k = 0
    if (tail === 3) k ^= (bytes.charCodeAt(blocks + 2) & 0xff) << 16
    if (tail >= 2) k ^= (bytes.charCodeAt(blocks + 1) & 0xff) << 8
    k ^= bytes.charCodeAt(blocks) & 0xff
    h ^= murmur3Scramble(k)
  }
  return murmur3Final(h, length)
}

/** Ring position of a byte string, an integer in [0, 2^52). */
export const position = (bytes: string): number =>
  murmur3(bytes, SEED_HIGH) * 2 ** 20 + (murmur3(bytes, SEED_LOW) >>> 12)

/** Encode a JS string as UTF-8 and return it as a byte string (one char per byte). */
export const utf8Bytes = (text: string): string => {
  const encoded = new TextEncoder().encode(text)
  let out = ""
  for (const byte of encoded) out += String.fromCharCode(byte)
  return out
}
