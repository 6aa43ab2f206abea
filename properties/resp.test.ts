/**
 * Properties of the RESP2 codec (impl/wire/resp.ts): requests survive any chunking, arbitrary
 * bytes never throw, limits fail early with Redis-style text, replies encode to exact bytes.
 *
 * Requests are encoded here by hand rather than with the module's reply encoder, so that the
 * parser and the encoder are each checked against the protocol, not against each other.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import * as Resp from "../impl/wire/resp.ts"
import { assertFloors, params } from "./helpers/fc.ts"
import { splitAt } from "./helpers/bytes.ts"

type Outcome = ReadonlyArray<string> | { readonly error: string }

const bytes = (text: string): Buffer => Buffer.from(text, "latin1")

/** A client's encoding of one request: an array of bulk strings. */
const respRequest = (args: ReadonlyArray<string>): string =>
  `*${args.length}\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join("")}`

/** Feed the pieces, draining after each; stop at the first error. Scribbles over each piece
 * once fed, to check that the parser copies what it keeps. */
const parseAll = (pieces: ReadonlyArray<Buffer>, limits: Partial<Resp.Limits> = {}) => {
  const parser = new Resp.RespParser(limits)
  const outcomes: Array<Outcome> = []
  for (const piece of pieces) {
    parser.feed(piece)
    piece.fill(0xaa)
    for (;;) {
      const result = parser.next()
      if (result === undefined) break
      if (result instanceof Resp.RespProtocolError) {
        outcomes.push({ error: result.message })
        assert.equal(parser.next(), result, "the error is sticky")
        return { parser, outcomes }
      }
      assert.ok(result.length > 0, "a command is never empty")
      outcomes.push([...result])
    }
  }
  return { parser, outcomes }
}

/** Arbitrary bytes, biased toward the ones that matter to the protocol. */
const byteString = (maxLength: number) =>
  fc.oneof(
    fc.uint8Array({ maxLength }).map((b) => Buffer.from(b).toString("latin1")),
    fc.string({ unit: fc.constantFrom("\r", "\n", "*", "$", "-", "1", " ", "a"), maxLength }),
  )

const isSpaceChar = (c: string): boolean => c === " " || (c >= "\t" && c <= "\r")

/** A word of an inline command: no whitespace, so splitting recovers it. */
const inlineWord = fc
  .uint8Array({ minLength: 1, maxLength: 8 })
  .map((b) => Buffer.from(b).toString("latin1"))
  .filter((w) => ![...w].some(isSpaceChar))

interface Request {
  /** What goes on the wire. */
  readonly wire: string
  /** The command it parses to; undefined for requests Redis skips (`*0`, blank lines). */
  readonly command: ReadonlyArray<string> | undefined
}

const arrayRequest: fc.Arbitrary<Request> = fc
  .array(byteString(12), { minLength: 1, maxLength: 6 })
  .map((args) => ({ wire: respRequest(args), command: args }))

const inlineRequest: fc.Arbitrary<Request> = fc
  .record({
    words: fc.array(inlineWord, { minLength: 1, maxLength: 5 }),
    gaps: fc.array(fc.string({ unit: fc.constantFrom(" ", "\t"), minLength: 1, maxLength: 3 }), {
      minLength: 6,
      maxLength: 6,
    }),
    lead: fc.constantFrom("", " ", "\t "),
    tail: fc.constantFrom("", " ", "\t"),
    newline: fc.constantFrom("\r\n", "\n"),
  })
  // A line starting with '*' is an array header, not an inline command.
  .filter(({ words, lead }) => lead !== "" || !words[0]!.startsWith("*"))
  .map(({ words, gaps, lead, tail, newline }) => ({
    wire: lead + words.map((w, i) => (i === 0 ? w : gaps[i]! + w)).join("") + tail + newline,
    command: words,
  }))

const skippedRequest: fc.Arbitrary<Request> = fc
  .constantFrom("*0\r\n", "*-1\r\n", "\r\n", "\n", "  \t\r\n")
  .map((wire) => ({ wire, command: undefined }))

const stream = fc.array(fc.oneof(arrayRequest, inlineRequest, skippedRequest), {
  minLength: 1,
  maxLength: 30,
})

const cuts = fc.array(fc.nat(), { maxLength: 40 })

const expected = (requests: ReadonlyArray<Request>): Array<Outcome> =>
  requests.flatMap((r) => (r.command === undefined ? [] : [[...r.command]]))

test("RESP-1: any split of a pipelined stream parses to the same commands", () => {
  fc.assert(
    fc.property(stream, cuts, (requests, cutAt) => {
      const wire = bytes(requests.map((r) => r.wire).join(""))
      const { parser, outcomes } = parseAll(splitAt(wire, cutAt))
      assert.deepEqual(outcomes, expected(requests))
      assert.equal(parser.bufferedBytes, 0)
    }),
    params(300),
  )
})

test("RESP-1: a pipelined stream fed byte by byte parses to the same commands", () => {
  fc.assert(
    fc.property(stream, (requests) => {
      const wire = bytes(requests.map((r) => r.wire).join(""))
      const pieces = [...wire].map((b) => Buffer.from([b]))
      assert.deepEqual(parseAll(pieces).outcomes, expected(requests))
    }),
    params(100),
  )
})

test("RESP-2: any command of arbitrary bytes round-trips through the array encoding", () => {
  fc.assert(
    fc.property(fc.array(byteString(300), { minLength: 1, maxLength: 10 }), (args) => {
      assert.deepEqual(parseAll([bytes(respRequest(args))]).outcomes, [args])
      // The module's own encoder writes the same bytes a client would.
      const viaEncoder = Resp.encode(Resp.array(args.map(Resp.bulkString)))
      assert.deepEqual(viaEncoder, bytes(respRequest(args)))
    }),
    params(300),
  )
})

/** Byte soup that looks like RESP often enough to reach every branch. */
const fuzzedStream = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
  fc
    .array(
      fc.oneof(
        fc.constantFrom("*", "$", "\r\n", "\r", "\n", "-", "-1", "0", "2", "9", " ", "+", "x"),
        fc.constantFrom("*1\r\n$4\r\nPING\r\n", "*2\r\n", "$3\r\n", "abc", "PING\r\n"),
        byteString(6),
      ),
      { maxLength: 40 },
    )
    .map((tokens) => bytes(tokens.join(""))),
  // Valid streams with a few bytes overwritten or dropped.
  fc
    .tuple(
      stream,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: -1, max: 255 })), { maxLength: 4 }),
    )
    .map(([requests, edits]) => {
      const data = [...bytes(requests.map((r) => r.wire).join(""))]
      for (const [at, byte] of edits) {
        if (data.length === 0) break
        if (byte < 0) data.splice(at % data.length, 1)
        else data[at % data.length] = byte
      }
      return Buffer.from(data)
    }),
)

test("RESP-3: arbitrary bytes never throw, and every split gives the same outcomes", () => {
  const tight = { maxBulkBytes: 8, maxArrayLength: 4, maxInlineBytes: 16 }
  fc.assert(
    fc.property(fuzzedStream, cuts, fc.boolean(), (data, cutAt, useTight) => {
      const limits = useTight ? tight : {}
      const whole = parseAll([Buffer.from(data)], limits)
      const split = parseAll(splitAt(data, cutAt), limits)
      assert.deepEqual(split.outcomes, whole.outcomes)
      const last = whole.outcomes.at(-1)
      if (last !== undefined && "error" in last) {
        assert.match(last.error, /^Protocol error: /)
        // Once failed, further input is ignored.
        whole.parser.feed(bytes("*1\r\n$4\r\nPING\r\n"))
        assert.ok(whole.parser.next() instanceof Resp.RespProtocolError)
      }
    }),
    params(500),
  )
})

const errorOf = (wire: string, limits: Partial<Resp.Limits> = {}) => {
  const parser = new Resp.RespParser(limits)
  parser.feed(bytes(wire))
  for (;;) {
    const result = parser.next()
    if (result instanceof Resp.RespProtocolError) return result
    assert.notEqual(result, undefined, `expected an error for ${JSON.stringify(wire)}`)
  }
}

test("RESP-4: a bulk string over the limit fails on its header, before the payload", () => {
  fc.assert(
    fc.property(fc.nat({ max: 1 << 20 }), fc.integer({ min: 1, max: 1 << 20 }), (max, over) => {
      const size = max + over
      const error = errorOf(`*1\r\n$${size}\r\n`, { maxBulkBytes: max })
      assert.equal(error.reason, "BulkTooLong")
      assert.equal(error.message, `Protocol error: bulk length ${size} exceeds limit ${max}`)
    }),
    params(100),
  )
  const atLimit = "x".repeat(10)
  assert.deepEqual(parseAll([bytes(respRequest([atLimit]))], { maxBulkBytes: 10 }).outcomes, [
    [atLimit],
  ])
  assert.equal(
    errorOf("*1\r\n$536870913\r\n").message,
    "Protocol error: bulk length 536870913 exceeds limit 536870912",
  )
})

test("RESP-4: an array over the limit fails on its header", () => {
  assert.equal(
    errorOf("*1048577\r\n").message,
    "Protocol error: multibulk length 1048577 exceeds limit 1048576",
  )
  assert.equal(errorOf("*3\r\n", { maxArrayLength: 2 }).reason, "MultibulkTooLong")
  const args = ["a", "b"]
  assert.deepEqual(parseAll([bytes(respRequest(args))], { maxArrayLength: 2 }).outcomes, [args])
})

test("RESP-4: an inline line over the limit fails without waiting for its newline", () => {
  const max = 64 * 1024
  const exact = "a".repeat(max)
  assert.deepEqual(parseAll([bytes(`${exact}\r\n`)]).outcomes, [[exact]])
  assert.deepEqual(parseAll([bytes(`${exact}\n`)]).outcomes, [[exact]])
  const tooLong = `${exact}a`
  assert.equal(errorOf(`${tooLong}\r\n`).message, "Protocol error: too big inline request")
  // No newline at all: the parser gives up once a legal line can no longer fit.
  const parser = new Resp.RespParser()
  parser.feed(bytes("a".repeat(max + 1)))
  assert.equal(parser.next(), undefined, "max + 1 bytes could still be a line and its CR")
  parser.feed(bytes("b"))
  const result = parser.next()
  assert.ok(result instanceof Resp.RespProtocolError)
  assert.equal(result.reason, "InlineTooLong")
})

test("RESP-5: inline commands split on whitespace", () => {
  const cases: ReadonlyArray<[string, ReadonlyArray<ReadonlyArray<string>>]> = [
    ["PING\r\n", [["PING"]]],
    ["SET a b\r\n", [["SET", "a", "b"]]],
    ["SET a b\n", [["SET", "a", "b"]]],
    ["  GET \t k  \r\n", [["GET", "k"]]],
    ["\r\n\r\nPING\r\nPING\n", [["PING"], ["PING"]]],
    ["SET k \xff\x00\r\n", [["SET", "k", "\xff\x00"]]],
    ["PING\r\n*1\r\n$4\r\nECHO\r\nQUIT\r\n", [["PING"], ["ECHO"], ["QUIT"]]],
  ]
  for (const [wire, commands] of cases) {
    assert.deepEqual(parseAll([bytes(wire)]).outcomes, commands, JSON.stringify(wire))
  }
  fc.assert(
    fc.property(fc.array(inlineRequest, { minLength: 1, maxLength: 10 }), cuts, (lines, cutAt) => {
      const wire = bytes(lines.map((l) => l.wire).join(""))
      assert.deepEqual(parseAll(splitAt(wire, cutAt)).outcomes, expected(lines))
    }),
    params(200),
  )
})

test("RESP-6: malformed requests are protocol errors, after the commands before them", () => {
  const cases: ReadonlyArray<[string, Resp.ProtocolErrorReason, string]> = [
    ["*1\r\n+OK\r\n", "ExpectedBulk", "expected '$', got '+'"],
    ["*1\r\n\x00", "ExpectedBulk", "expected '$', got '\\x00'"],
    ["*x\r\n", "InvalidMultibulkLength", "invalid multibulk length"],
    ["*\r\n", "InvalidMultibulkLength", "invalid multibulk length"],
    ["*-2\r\n", "InvalidMultibulkLength", "invalid multibulk length"],
    ["*1\n", "InvalidMultibulkLength", "invalid multibulk length"],
    ["*1\rx", "InvalidMultibulkLength", "invalid multibulk length"],
    ["*1\r\n$-1\r\n", "InvalidBulkLength", "invalid bulk length"],
    ["*1\r\n$-5\r\n", "InvalidBulkLength", "invalid bulk length"],
    ["*1\r\n$x\r\n", "InvalidBulkLength", "invalid bulk length"],
    ["*1\r\n$ 3\r\n", "InvalidBulkLength", "invalid bulk length"],
    ["*1\r\n$3\rx", "InvalidBulkLength", "invalid bulk length"],
    ["*1\r\n$1234567890123456\r\n", "InvalidBulkLength", "invalid bulk length"],
    ["*1\r\n$3\r\nabcXY", "ExpectedCrlf", "expected CRLF after bulk string"],
    ["*1\r\n$3\r\nabc\n\r", "ExpectedCrlf", "expected CRLF after bulk string"],
  ]
  for (const [wire, reason, detail] of cases) {
    const { outcomes } = parseAll([bytes(`PING\r\n${wire}`)])
    assert.deepEqual(outcomes, [["PING"], { error: `Protocol error: ${detail}` }], wire)
    assert.equal(errorOf(wire).reason, reason, JSON.stringify(wire))
  }
})

test("RESP-7: replies encode to the exact RESP2 bytes", () => {
  const cases: ReadonlyArray<[Resp.Reply, string]> = [
    [Resp.ok, "+OK\r\n"],
    [Resp.simpleString("a\r\nb"), "+a  b\r\n"],
    [Resp.error("ERR boom"), "-ERR boom\r\n"],
    [Resp.error("ERR two\nlines"), "-ERR two lines\r\n"],
    [Resp.integer(0), ":0\r\n"],
    [Resp.integer(-42), ":-42\r\n"],
    [Resp.integer(2n ** 63n - 1n), ":9223372036854775807\r\n"],
    [Resp.integer(-(2 ** 63)), ":-9223372036854775808\r\n"],
    [Resp.bulkString(""), "$0\r\n\r\n"],
    [Resp.bulkString("\xff\x00\r\n"), "$4\r\n\xff\x00\r\n\r\n"],
    [Resp.bulkString(new Uint8Array([0xff, 0x00])), "$2\r\n\xff\x00\r\n"],
    [Resp.nullBulkString, "$-1\r\n"],
    [Resp.array([]), "*0\r\n"],
    [Resp.nullArray, "*-1\r\n"],
    [
      Resp.array([
        Resp.bulkString("a"),
        Resp.nullBulkString,
        Resp.array([Resp.integer(1)]),
        Resp.nullArray,
      ]),
      "*4\r\n$1\r\na\r\n$-1\r\n*1\r\n:1\r\n*-1\r\n",
    ],
  ]
  for (const [reply, wire] of cases) {
    assert.deepEqual(Resp.encode(reply), bytes(wire), JSON.stringify(wire))
    assert.equal(Resp.encodedLength(reply), wire.length)
  }
  assert.deepEqual(Resp.encodeSimpleString("PONG"), bytes("+PONG\r\n"))
  assert.deepEqual(Resp.encodeError("ERR x"), bytes("-ERR x\r\n"))
  assert.deepEqual(Resp.encodeInteger(7n), bytes(":7\r\n"))
  assert.deepEqual(Resp.encodeBulkString(null), bytes("$-1\r\n"))
  assert.deepEqual(Resp.encodeArray(null), bytes("*-1\r\n"))
  assert.deepEqual(Resp.encodeNullArray(), bytes("*-1\r\n"))
  for (const bad of [1.5, Number.NaN, 2 ** 63, 2n ** 63n, -(2n ** 63n) - 1n]) {
    assert.throws(() => Resp.encode(Resp.integer(bad)), RangeError)
  }
})

/** What a reply decodes to, in a shape both the generator and the reference decoder produce. */
type Decoded =
  | { readonly simple: string }
  | { readonly error: string }
  | { readonly integer: bigint }
  | { readonly bulk: string | null }
  | { readonly array: ReadonlyArray<Decoded> | null }
  | { readonly map: ReadonlyArray<readonly [Decoded, Decoded]> }
  | { readonly null: true }

const clean = (text: string): string => text.replace(/[\r\n]/g, " ")

const expectedDecoding = (reply: Resp.Reply, proto: Resp.Protocol = 2): Decoded => {
  switch (reply._tag) {
    case "SimpleString":
      return { simple: clean(reply.value) }
    case "Error":
      return { error: clean(reply.message) }
    case "Integer":
      return { integer: BigInt(reply.value) }
    case "BulkString": {
      const v = reply.value
      if (v === null && proto === 3) return { null: true }
      return { bulk: v === null || typeof v === "string" ? v : Buffer.from(v).toString("latin1") }
    }
    case "Array":
      if (reply.items === null && proto === 3) return { null: true }
      return {
        array: reply.items === null ? null : reply.items.map((r) => expectedDecoding(r, proto)),
      }
    case "Map": {
      const pairs = reply.entries.map(
        ([k, v]) => [expectedDecoding(k, proto), expectedDecoding(v, proto)] as const,
      )
      return proto === 3 ? { map: pairs } : { array: pairs.flat() }
    }
  }
}

/** A deliberately naive RESP2 and RESP3 reply reader: the oracle for the encoder. */
const decodeReply = (wire: Buffer, at: number): [Decoded, number] => {
  const lineEnd = wire.indexOf("\r\n", at, "latin1")
  assert.ok(lineEnd > at, "every reply starts with a CRLF-terminated line")
  const type = String.fromCharCode(wire[at]!)
  const line = wire.toString("latin1", at + 1, lineEnd)
  const next = lineEnd + 2
  if (type === "+") return [{ simple: line }, next]
  if (type === "-") return [{ error: line }, next]
  if (type === ":") return [{ integer: BigInt(line) }, next]
  if (type === "_") {
    assert.equal(line, "")
    return [{ null: true }, next]
  }
  const n = Number(line)
  if (type === "%") {
    const pairs: Array<readonly [Decoded, Decoded]> = []
    let pos = next
    for (let i = 0; i < n; i++) {
      const [k, afterKey] = decodeReply(wire, pos)
      const [v, afterValue] = decodeReply(wire, afterKey)
      pairs.push([k, v])
      pos = afterValue
    }
    return [{ map: pairs }, pos]
  }
  if (type === "$") {
    if (n === -1) return [{ bulk: null }, next]
    assert.equal(wire.toString("latin1", next + n, next + n + 2), "\r\n")
    return [{ bulk: wire.toString("latin1", next, next + n) }, next + n + 2]
  }
  assert.equal(type, "*")
  if (n === -1) return [{ array: null }, next]
  const items: Array<Decoded> = []
  let pos = next
  for (let i = 0; i < n; i++) {
    const [item, after] = decodeReply(wire, pos)
    items.push(item)
    pos = after
  }
  return [{ array: items }, pos]
}

const replyArb: fc.Arbitrary<Resp.Reply> = fc.letrec<{ reply: Resp.Reply }>((tie) => ({
  reply: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    byteString(20).map(Resp.simpleString),
    byteString(20).map(Resp.error),
    fc
      .oneof(
        fc.integer(),
        fc.maxSafeInteger(),
        fc.constantFrom(2 ** 62, -(2 ** 63), 2 ** 63 - 1024),
        fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      )
      .map(Resp.integer),
    fc
      .oneof(byteString(40), fc.uint8Array({ maxLength: 40 }), fc.constant(null))
      .map(Resp.bulkString),
    fc.constant(Resp.nullArray),
    fc.array(tie("reply"), { maxLength: 5 }).map(Resp.array),
    fc.array(fc.tuple(byteString(8), tie("reply")), { maxLength: 4 }).map(Resp.map),
  ),
})).reply

test("RESP-7, RESP-9: any batch of replies encodes into one buffer that decodes to the replies, in RESP2 and RESP3", () => {
  const seen = { maps: 0, nulls3: 0 }
  fc.assert(
    fc.property(
      fc.array(replyArb, { maxLength: 20 }),
      fc.constantFrom<Resp.Protocol>(2, 3),
      (replies, proto) => {
        const batch = Resp.encodeAll(replies, proto)
        const one = replies.map((r) => Resp.encode(r, proto))
        assert.deepEqual(batch, Buffer.concat(one), "a batch is the concatenation")
        replies.forEach((r, i) => {
          assert.equal(one[i]!.length, Resp.encodedLength(r, proto))
        })
        const decoded: Array<Decoded> = []
        let at = 0
        while (at < batch.length) {
          const [reply, next] = decodeReply(batch, at)
          decoded.push(reply)
          at = next
        }
        assert.deepEqual(
          decoded,
          replies.map((r) => expectedDecoding(r, proto)),
        )
        const text = batch.toString("latin1")
        if (proto === 3 && text.includes("%")) seen.maps++
        if (proto === 3 && text.includes("_\r\n")) seen.nulls3++
      },
    ),
    params(300),
  )
  assertFloors(seen, { maps: 11, nulls3: 11 })
})

test("RESP-9: RESP3 replies encode to the exact bytes; RESP2 gets maps as flat arrays", () => {
  const reply = Resp.map([
    ["a", Resp.integer(1)],
    ["b", Resp.nullBulkString],
    ["c", Resp.array([Resp.nullArray, Resp.bulkString("x")])],
  ])
  assert.deepEqual(
    Resp.encode(reply, 3),
    bytes("%3\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n_\r\n$1\r\nc\r\n*2\r\n_\r\n$1\r\nx\r\n"),
  )
  assert.deepEqual(
    Resp.encode(reply, 2),
    bytes("*6\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n$-1\r\n$1\r\nc\r\n*2\r\n*-1\r\n$1\r\nx\r\n"),
  )
  assert.equal(Resp.encodedLength(reply, 3), Resp.encode(reply, 3).length)
  assert.equal(Resp.encodedLength(reply, 2), Resp.encode(reply, 2).length)
})

/** Linear parsing takes well under a second here; a quadratic one would take hours. The budget
 * is checked inside the loop because node:test cannot time out a synchronous test. */

test("RESP-8: large requests fed byte by byte parse exactly", () => {
  const big = "v".repeat(1 << 20)
  const many = Array.from({ length: 20_000 }, (_, i) => `a${i}`)
  const line = `SET k ${"w".repeat(60_000)}`
  const wire = bytes([respRequest(["SET", "k", big]), respRequest(many), `${line}\r\n`].join(""))
  const parser = new Resp.RespParser()
  const commands: Array<ReadonlyArray<string>> = []
  const one = Buffer.alloc(1)
  for (let i = 0; i < wire.length; i++) {
    one[0] = wire[i]!
    parser.feed(one)
    const result = parser.next()
    assert.ok(!(result instanceof Resp.RespProtocolError))
    if (result !== undefined) commands.push(result)
  }
  assert.deepEqual(commands, [["SET", "k", big], many, line.split(" ")])
  assert.equal(parser.bufferedBytes, 0)
})
