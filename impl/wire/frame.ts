/**
 * Length-prefixed frames for node-to-node TCP. A frame is a 4-byte big-endian unsigned byte
 * count followed by that many bytes of UTF-8 text (JSON, by the caller's convention).
 *
 * `FrameDecoder` turns a byte stream into frame payloads incrementally: frames split across
 * chunks and many frames in one chunk both work, and the cost is O(total bytes). A frame that
 * arrives whole in an empty decoder is decoded straight from the chunk without being copied;
 * only an incomplete tail is buffered, and a pending frame costs an O(1) check per chunk.
 *
 * A length prefix above the limit fails as soon as the 4 header bytes arrive, before any of the
 * body is buffered. The error is a value, not an exception; the decoder then stays failed and
 * the caller is expected to close the connection, since the stream cannot be resynchronised.
 *
 * Deliberately not here: JSON parsing and schema validation (the caller does both with
 * effect/Schema), UTF-8 validation (malformed sequences decode to U+FFFD and the schema or JSON
 * parse rejects the result), and any notion of message types, versions or checksums (TCP
 * already checksums; a version belongs in the JSON).
 */
import * as ReadBuffer from "./buffer.ts"
import { Data } from "effect"

/** Size of the length prefix. */
export const HEADER_BYTES = 4
/** Default largest payload accepted by a decoder. */
export const FRAME_BYTES_MAX_DEFAULT = 64 * 1024 * 1024
/** The length prefix is a uint32, so no payload can be longer than this. */
const FRAME_BYTES_ENCODABLE_MAX = 0xffff_ffff
/** First allocation for a buffered tail. */
/** An emptied buffer larger than this is dropped, so one big frame does not pin its memory. */

/** A length prefix announced more than the decoder's limit. Close the connection. */
export class FrameTooLarge extends Data.TaggedError("FrameTooLarge")<{
  readonly frameBytes: number
  readonly frameBytesMax: number
  readonly message: string
}> {}

const frameTooLarge = (frameBytes: number, frameBytesMax: number): FrameTooLarge =>
  new FrameTooLarge({
    frameBytes,
    frameBytesMax,
    message: `frame too large: ${frameBytes} bytes > limit ${frameBytesMax}`,
  })

/**
 * What one `push` produced: the payloads completed by this chunk, in order, and the error if
 * the stream failed. Frames completed before the error are still delivered.
 */
export interface Decoded {
  readonly frames: ReadonlyArray<string>
  readonly error: FrameTooLarge | undefined
}

export interface DecoderOptions {
  /** Largest payload accepted, in bytes (the prefix itself not counted). */
  readonly frameBytesMax?: number
}

/** Incremental frame decoder for one connection. Not shared between connections. */
export class FrameDecoder {
  readonly frameBytesMax: number
  private buf: Buffer = Buffer.alloc(0)
  /** First unread byte of `buf`. */
  private start = 0
  /** One past the last filled byte of `buf`. */
  private end = 0
  private failure: FrameTooLarge | undefined = undefined

  constructor(options: DecoderOptions = {}) {
    this.frameBytesMax = options.frameBytesMax ?? FRAME_BYTES_MAX_DEFAULT
  }

  /** Bytes received that do not yet form a complete frame. */
  get bufferedBytes(): number {
    return this.end - this.start
  }

  /**
   * Consume a chunk read from the connection and return the frames it completed. The chunk is
   * not retained; the caller may reuse it. After an error, input is ignored and every call
   * returns the same error.
   */
  push(chunk: Uint8Array): Decoded {
    if (this.failure !== undefined) return { frames: [], error: this.failure }
    const frames: Array<string> = []
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length)
    if (this.start === this.end) {
      const used = this.scan(bytes, 0, bytes.length, frames)
      if (this.failure === undefined && used < bytes.length) this.append(bytes.subarray(used))
    } else {
      this.append(bytes)
      this.start = this.scan(this.buf, this.start, this.end, frames)
      if (this.start === this.end) this.release()
    }
    if (this.failure !== undefined) this.release()
    return { frames, error: this.failure }
  }

  /** Decode whole frames in `source[from, to)`; returns where the first incomplete one starts. */
  private scan(source: Buffer, from: number, to: number, frames: Array<string>): number {
    let at = from
    while (to - at >= HEADER_BYTES) {
      const frameBytes = source.readUInt32BE(at)
      if (frameBytes > this.frameBytesMax) {
        this.failure = frameTooLarge(frameBytes, this.frameBytesMax)
        return at
      }
      const bodyStart = at + HEADER_BYTES
      if (to - bodyStart < frameBytes) break
      frames.push(source.toString("utf8", bodyStart, bodyStart + frameBytes))
      at = bodyStart + frameBytes
    }
    return at
  }

  private append(bytes: Buffer): void {
    this.reserve(bytes.length)
    bytes.copy(this.buf, this.end)
    this.end += bytes.length
  }

  /** Make room for `extra` more bytes after `end` (impl/wire/buffer.ts). */
  private reserve(extra: number): void {
    if (this.end + extra <= this.buf.length) return
    this.buf = ReadBuffer.reserve(this.buf, this.start, this.end, extra)
    this.end -= this.start
    this.start = 0
  }

  /** Nothing is buffered any more: rewind, and drop an oversized buffer (all of it if failed). */
  private release(): void {
    this.start = 0
    this.end = 0
    if (this.failure !== undefined || this.buf.length > ReadBuffer.BUFFER_BYTES_RETAINED_MAX) {
      this.buf = Buffer.alloc(0)
    }
  }
}

const writeFrame = (payload: string, payloadBytes: number, target: Buffer, at: number): number => {
  target.writeUInt32BE(payloadBytes, at)
  target.write(payload, at + HEADER_BYTES, payloadBytes, "utf8")
  return at + HEADER_BYTES + payloadBytes
}

const payloadLength = (payload: string): number => {
  const bytes = Buffer.byteLength(payload, "utf8")
  if (bytes > FRAME_BYTES_ENCODABLE_MAX) {
    throw new RangeError(`frame payload of ${bytes} bytes does not fit a uint32 prefix`)
  }
  return bytes
}

/**
 * One frame: the prefix and the UTF-8 payload in a single Buffer. The encoder does not apply
 * the receiver's limit; a sender that may exceed it should check `frame.length - HEADER_BYTES`.
 */
export const encodeFrame = (payload: string): Buffer => {
  const bytes = payloadLength(payload)
  const out = Buffer.allocUnsafe(HEADER_BYTES + bytes)
  writeFrame(payload, bytes, out, 0)
  return out
}

/** Many frames in one Buffer, for a single socket write. */
export const encodeFrames = (payloads: ReadonlyArray<string>): Buffer => {
  const sizes = payloads.map(payloadLength)
  let total = 0
  for (const size of sizes) total += HEADER_BYTES + size
  const out = Buffer.allocUnsafe(total)
  let at = 0
  payloads.forEach((payload, i) => {
    at = writeFrame(payload, sizes[i]!, out, at)
  })
  return out
}
