/**
 * RESP2, the Redis serialization protocol, for the server side of the client port: an
 * incremental request parser (`RespParser`) and reply encoders (`encode`, `encodeAll`).
 *
 * Requests arrive as RESP arrays of bulk strings (what client libraries send) or as inline
 * commands (`SET a b\r\n`, what telnet users type). Keys and values in this project are byte
 * strings, JS strings with one char per byte, so bulk strings are decoded and encoded as latin1
 * and any bytes round-trip exactly.
 *
 * Cost: the parser keeps a read offset into one growable buffer and remembers where it stopped
 * (elements still expected, the pending bulk length, how far an inline line was scanned), so a
 * stream fed in chunks of any size, even byte by byte, costs O(total bytes). The buffer is
 * compacted only when full, and only when at least half of it would then be free.
 *
 * Errors: malformed or oversized input yields a `RespProtocolError` value, never an exception.
 * The parser then stays failed; the caller is expected to reply `-ERR <message>` and close the
 * connection, as Redis does, because after a framing error the next command cannot be found.
 *
 * Deliberately not here: command semantics; RESP3; reply parsing (the server never reads
 * replies); quoted arguments in inline commands (Redis's sdssplitargs understands `"a b"`, we
 * split on whitespace only); a cap on total buffered bytes beyond the per-element limits (the
 * caller can watch `bufferedBytes`).
 */
import * as ReadBuffer from "./buffer.ts"
import { Data } from "effect"

// ---------------------------------------------------------------------------------------------
// Parsing

/** One request: the command name and its arguments, as byte strings. Never empty. */
export type Command = ReadonlyArray<string>

export interface Limits {
  /** Largest bulk string accepted, in bytes. The node passes its own max value size. */
  readonly maxBulkBytes: number
  /** Most elements in one request array. */
  readonly maxArrayLength: number
  /** Longest inline command line, in bytes, not counting the line terminator. */
  readonly maxInlineBytes: number
}

/** Redis's own limits: proto-max-bulk-len, the unauthenticated multibulk cap, inline max size. */
export const defaultLimits: Limits = {
  maxBulkBytes: 512 * 1024 * 1024,
  maxArrayLength: 1024 * 1024,
  maxInlineBytes: 64 * 1024,
}

export type ProtocolErrorReason =
  | "InvalidMultibulkLength"
  | "MultibulkTooLong"
  | "ExpectedBulk"
  | "InvalidBulkLength"
  | "BulkTooLong"
  | "ExpectedCrlf"
  | "InlineTooLong"

/**
 * The request stream is malformed or exceeds a limit. `message` is Redis-style text without the
 * `ERR ` prefix (e.g. `Protocol error: invalid bulk length`); the caller sends `-ERR <message>`
 * and closes the connection.
 */
export class RespProtocolError extends Data.TaggedError("RespProtocolError")<{
  readonly reason: ProtocolErrorReason
  readonly message: string
}> {}

const protocolError = (reason: ProtocolErrorReason, detail: string): RespProtocolError =>
  new RespProtocolError({ reason, message: `Protocol error: ${detail}` })

const CR = 0x0d
const LF = 0x0a
const STAR = 0x2a
const DOLLAR = 0x24
const MINUS = 0x2d
const DIGIT_0 = 0x30
const DIGIT_9 = 0x39

/** Digits in a length: any limit we accept fits, and the value stays an exact double. */
const LENGTH_DIGITS_MAX = 15
/** A sign and the digits. */
const LENGTH_CHARS_MAX = LENGTH_DIGITS_MAX + 1
/** First allocation; large enough for typical pipelines of small commands. */
/** An emptied buffer larger than this is dropped, so one big value does not pin its memory. */

type Step<A> = A | RespProtocolError | undefined

/**
 * Incremental RESP2 request parser for one connection. Call `feed` with each chunk read from
 * the socket, then `next` until it returns undefined:
 * - a `Command` (array of byte strings) for each complete request, in order;
 * - undefined when more bytes are needed;
 * - a `RespProtocolError`, after which it returns that same error forever and `feed` ignores
 *   input: reply with it and close the connection.
 *
 * Empty requests (`*0`, `*-1`, blank inline lines) are skipped, as Redis skips them. A null
 * bulk string (`$-1`) inside a request is an error, as in Redis: a command has no null args.
 */
export class RespParser {
  readonly limits: Limits
  private buf: Buffer = Buffer.alloc(0)
  /** First unread byte of `buf`. */
  private start = 0
  /** One past the last filled byte of `buf`. */
  private end = 0
  /** Elements of the current array request; 0 between requests. */
  private expected = 0
  /** Elements of the current array request parsed so far. */
  private args: Array<string> = []
  /** Payload length of a bulk string whose header has been consumed; -1 when none. */
  private bulkBytes = -1
  /** Bytes of the current inline line, from `start`, already searched for LF in vain. */
  private inlineScannedBytes = 0
  private failure: RespProtocolError | undefined = undefined

  constructor(limits: Partial<Limits> = {}) {
    this.limits = { ...defaultLimits, ...limits }
  }

  /** Bytes received and not yet returned as commands. */
  get bufferedBytes(): number {
    return this.end - this.start
  }

  /** Append bytes read from the connection. The chunk is copied; the caller may reuse it. */
  feed(chunk: Uint8Array): void {
    if (this.failure !== undefined || chunk.length === 0) return
    this.reserve(chunk.length)
    this.buf.set(chunk, this.end)
    this.end += chunk.length
  }

  /** The next complete command, undefined if more bytes are needed, or the protocol error. */
  next(): Command | RespProtocolError | undefined {
    if (this.failure !== undefined) return this.failure
    const result = this.parse()
    if (result instanceof RespProtocolError) {
      this.failure = result
      this.buf = Buffer.alloc(0)
      this.start = 0
      this.end = 0
    } else if (this.start === this.end) {
      this.maybeRelease()
    }
    return result
  }

  private parse(): Step<Command> {
    for (;;) {
      if (this.expected === 0) {
        if (this.start === this.end) return undefined
        if (this.buf[this.start] !== STAR) {
          const words = this.readInline()
          if (words === undefined || words instanceof RespProtocolError) return words
          if (words.length > 0) return words
          continue
        }
        const length = this.readLength()
        if (length === undefined) return undefined
        if (length === null || length < -1) {
          return protocolError("InvalidMultibulkLength", "invalid multibulk length")
        }
        if (length > this.limits.maxArrayLength) {
          return protocolError(
            "MultibulkTooLong",
            `multibulk length ${length} exceeds limit ${this.limits.maxArrayLength}`,
          )
        }
        if (length <= 0) continue
        this.expected = length
      }
      return this.readElements()
    }
  }

  /** Continue the current array request; returns it once every element has arrived. */
  private readElements(): Step<Command> {
    while (this.args.length < this.expected) {
      if (this.bulkBytes < 0) {
        const header = this.readBulkHeader()
        if (header === undefined || header instanceof RespProtocolError) return header
        this.bulkBytes = header
      }
      const size = this.bulkBytes
      // The size check is O(1), so a large value trickling in is not rescanned.
      if (this.end - this.start < size + 2) return undefined
      const after = this.start + size
      if (this.buf[after] !== CR || this.buf[after + 1] !== LF) {
        return protocolError("ExpectedCrlf", "expected CRLF after bulk string")
      }
      this.args.push(this.buf.toString("latin1", this.start, after))
      this.start = after + 2
      this.bulkBytes = -1
    }
    const command = this.args
    this.args = []
    this.expected = 0
    return command
  }

  private readBulkHeader(): Step<number> {
    if (this.start === this.end) return undefined
    const type = this.buf[this.start]!
    if (type !== DOLLAR) {
      return protocolError("ExpectedBulk", `expected '$', got '${showByte(type)}'`)
    }
    const length = this.readLength()
    if (length === undefined) return undefined
    if (length === null || length < 0) {
      return protocolError("InvalidBulkLength", "invalid bulk length")
    }
    if (length > this.limits.maxBulkBytes) {
      return protocolError(
        "BulkTooLong",
        `bulk length ${length} exceeds limit ${this.limits.maxBulkBytes}`,
      )
    }
    return length
  }

  /**
   * Read `<type><integer>\r\n` at `start`. Returns the integer and consumes the line, undefined
   * if the line is incomplete, or null if it is malformed. A non-digit fails at once, and the
   * line is at most LENGTH_CHARS_MAX long, so the rescans while it trickles in are O(1).
   */
  private readLength(): number | null | undefined {
    const from = this.start + 1
    const limit = Math.min(this.end, from + LENGTH_CHARS_MAX + 1)
    const negative = from < this.end && this.buf[from] === MINUS
    let value = 0
    let digits = 0
    for (let i = negative ? from + 1 : from; i < limit; i++) {
      const byte = this.buf[i]!
      if (byte === CR) {
        if (digits === 0) return null
        if (i + 1 === this.end) return undefined
        if (this.buf[i + 1] !== LF) return null
        this.start = i + 2
        return negative ? -value : value
      }
      if (byte < DIGIT_0 || byte > DIGIT_9 || digits === LENGTH_DIGITS_MAX) return null
      value = value * 10 + (byte - DIGIT_0)
      digits++
    }
    return this.end - from > LENGTH_CHARS_MAX ? null : undefined
  }

  /** Read one inline line; resumes the LF search where the previous call stopped. */
  private readInline(): Step<Command> {
    const max = this.limits.maxInlineBytes
    // A line of `max` bytes plus "\r\n" ends before start + max + 2; never search further.
    const searchEnd = Math.min(this.end, this.start + max + 2)
    const from = this.start + this.inlineScannedBytes
    const lf = this.buf.subarray(0, searchEnd).indexOf(LF, from)
    if (lf < 0) {
      this.inlineScannedBytes = searchEnd - this.start
      if (this.end - this.start >= max + 2) {
        return protocolError("InlineTooLong", "too big inline request")
      }
      return undefined
    }
    const lineEnd = lf > this.start && this.buf[lf - 1] === CR ? lf - 1 : lf
    if (lineEnd - this.start > max) {
      return protocolError("InlineTooLong", "too big inline request")
    }
    const words = splitWords(this.buf, this.start, lineEnd)
    this.start = lf + 1
    this.inlineScannedBytes = 0
    return words
  }

  /** Make room for `extra` more bytes after `end` (impl/wire/buffer.ts). */
  private reserve(extra: number): void {
    if (this.end + extra <= this.buf.length) return
    this.buf = ReadBuffer.reserve(this.buf, this.start, this.end, extra)
    this.end -= this.start
    this.start = 0
  }

  /** Everything read has been consumed: rewind for free, and drop an oversized buffer. */
  private maybeRelease(): void {
    this.start = 0
    this.end = 0
    if (this.buf.length > ReadBuffer.BUFFER_BYTES_RETAINED_MAX) this.buf = Buffer.alloc(0)
  }
}

/** Whitespace as C's isspace sees it, which is what Redis splits inline commands on. */
const isSpace = (byte: number): boolean => byte === 0x20 || (byte >= 0x09 && byte <= 0x0d)

const splitWords = (buf: Buffer, from: number, to: number): Array<string> => {
  const words: Array<string> = []
  let i = from
  while (i < to) {
    while (i < to && isSpace(buf[i]!)) i++
    const wordStart = i
    while (i < to && !isSpace(buf[i]!)) i++
    if (i > wordStart) words.push(buf.toString("latin1", wordStart, i))
  }
  return words
}

const showByte = (byte: number): string =>
  byte > 0x20 && byte < 0x7f
    ? String.fromCharCode(byte)
    : `\\x${byte.toString(16).padStart(2, "0")}`

// ---------------------------------------------------------------------------------------------
// Encoding

/**
 * A reply, as plain data, so that a batch can be sized first and written into one Buffer.
 * Text fields are byte strings (one char per byte; chars above U+00FF keep only their low byte,
 * which is a caller bug but can never break the framing).
 */
export type Reply =
  | { readonly _tag: "SimpleString"; readonly value: string }
  | { readonly _tag: "Error"; readonly message: string }
  | { readonly _tag: "Integer"; readonly value: number | bigint }
  | { readonly _tag: "BulkString"; readonly value: string | Uint8Array | null }
  | { readonly _tag: "Array"; readonly items: ReadonlyArray<Reply> | null }
  /** RESP3 `%n` map; a RESP2 connection gets the flat array of keys and values instead. */
  | { readonly _tag: "Map"; readonly entries: ReadonlyArray<readonly [Reply, Reply]> }

/**
 * The protocol a connection speaks (HELLO 2 or 3). The replies are the same data either way;
 * only their encoding differs: RESP3 sends null bulk strings and null arrays as `_`, and maps as
 * `%n`, where RESP2 sends `$-1`, `*-1` and a flat array of 2n items.
 */
export type Protocol = 2 | 3

/** `+value`. CR and LF would end the line early, so they become spaces (as Redis does). */
export const simpleString = (value: string): Reply => ({ _tag: "SimpleString", value })
/** `-message`; by convention `message` starts with a code such as `ERR` or `WRONGTYPE`. */
export const error = (message: string): Reply => ({ _tag: "Error", message })
/** `:value`; must be an integer in the signed 64-bit range, or `encode` throws. */
export const integer = (value: number | bigint): Reply => ({ _tag: "Integer", value })
/** `$len` and the bytes; null is the null bulk string `$-1`. */
export const bulkString = (value: string | Uint8Array | null): Reply => ({
  _tag: "BulkString",
  value,
})
/** `*len` and the items, which may be nested arrays or nulls; null is the null array `*-1`. */
export const array = (items: ReadonlyArray<Reply> | null): Reply => ({ _tag: "Array", items })
/** A map of field names to replies (`%n` in RESP3, a flat array in RESP2). */
export const map = (entries: ReadonlyArray<readonly [string, Reply]>): Reply => ({
  _tag: "Map",
  entries: entries.map(([k, v]) => [bulkString(k), v] as const),
})

export const ok: Reply = simpleString("OK")
export const nullBulkString: Reply = bulkString(null)
export const nullArray: Reply = array(null)

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n
const TWO_POW_63 = 2 ** 63

const lineText = (text: string): string =>
  /[\r\n]/.test(text) ? text.replace(/[\r\n]/g, " ") : text

const integerText = (value: number | bigint): string => {
  const inRange =
    typeof value === "bigint"
      ? value >= INT64_MIN && value <= INT64_MAX
      : Number.isInteger(value) && value >= -TWO_POW_63 && value < TWO_POW_63
  if (!inRange) throw new RangeError(`RESP integer out of range: ${value}`)
  // String(2 ** 62) prints the shortest round-trip digits, not the exact value; BigInt does.
  return typeof value === "number" && !Number.isSafeInteger(value)
    ? BigInt(value).toString()
    : String(value)
}

/** Exact encoded size of `reply` in bytes, in protocol `proto`. */
export const encodedLength = (reply: Reply, proto: Protocol = 2): number => {
  switch (reply._tag) {
    case "SimpleString":
      return reply.value.length + 3
    case "Error":
      return reply.message.length + 3
    case "Integer":
      return integerText(reply.value).length + 3
    case "BulkString": {
      const value = reply.value
      if (value === null) return proto === 3 ? 3 : 5
      return String(value.length).length + value.length + 5
    }
    case "Array": {
      const items = reply.items
      if (items === null) return proto === 3 ? 3 : 5
      let size = String(items.length).length + 3
      for (const item of items) size += encodedLength(item, proto)
      return size
    }
    case "Map": {
      const entries = reply.entries
      let size = String(proto === 3 ? entries.length : 2 * entries.length).length + 3
      for (const [k, v] of entries) size += encodedLength(k, proto) + encodedLength(v, proto)
      return size
    }
  }
}

const writeLine = (target: Buffer, offset: number, text: string): number => {
  offset += target.write(text, offset, text.length, "latin1")
  target[offset] = CR
  target[offset + 1] = LF
  return offset + 2
}

/**
 * Write `reply` into `target` at `offset` and return the offset after it. `target` must have
 * `encodedLength(reply, proto)` bytes free there.
 */
export const encodeInto = (
  reply: Reply,
  target: Buffer,
  offset: number,
  proto: Protocol = 2,
): number => {
  switch (reply._tag) {
    case "SimpleString":
      return writeLine(target, offset, `+${lineText(reply.value)}`)
    case "Error":
      return writeLine(target, offset, `-${lineText(reply.message)}`)
    case "Integer":
      return writeLine(target, offset, `:${integerText(reply.value)}`)
    case "BulkString": {
      const value = reply.value
      if (value === null) return writeLine(target, offset, proto === 3 ? "_" : "$-1")
      offset = writeLine(target, offset, `$${value.length}`)
      if (typeof value === "string") offset += target.write(value, offset, value.length, "latin1")
      else {
        target.set(value, offset)
        offset += value.length
      }
      target[offset] = CR
      target[offset + 1] = LF
      return offset + 2
    }
    case "Array": {
      const items = reply.items
      if (items === null) return writeLine(target, offset, proto === 3 ? "_" : "*-1")
      offset = writeLine(target, offset, `*${items.length}`)
      for (const item of items) offset = encodeInto(item, target, offset, proto)
      return offset
    }
    case "Map": {
      const entries = reply.entries
      const header = proto === 3 ? `%${entries.length}` : `*${2 * entries.length}`
      offset = writeLine(target, offset, header)
      for (const [k, v] of entries) {
        offset = encodeInto(k, target, offset, proto)
        offset = encodeInto(v, target, offset, proto)
      }
      return offset
    }
  }
}

/** One reply as a Buffer. */
export const encode = (reply: Reply, proto: Protocol = 2): Buffer => encodeAll([reply], proto)

/** A batch of pipelined replies as one Buffer: one allocation, one socket write. */
export const encodeAll = (replies: ReadonlyArray<Reply>, proto: Protocol = 2): Buffer => {
  let size = 0
  for (const reply of replies) size += encodedLength(reply, proto)
  const out = Buffer.allocUnsafe(size)
  let offset = 0
  for (const reply of replies) offset = encodeInto(reply, out, offset, proto)
  if (offset !== size) throw new Error(`RESP encoder wrote ${offset} bytes, sized ${size}`)
  return out
}

export const encodeSimpleString = (value: string): Buffer => encode(simpleString(value))
export const encodeError = (message: string): Buffer => encode(error(message))
export const encodeInteger = (value: number | bigint): Buffer => encode(integer(value))
export const encodeBulkString = (value: string | Uint8Array | null): Buffer =>
  encode(bulkString(value))
export const encodeArray = (items: ReadonlyArray<Reply> | null): Buffer => encode(array(items))
export const encodeNullArray = (): Buffer => encode(nullArray)
