/**
 * Properties of the node-to-node framing (impl/wire/frame.ts): payloads survive any chunking,
 * the prefix is the big-endian UTF-8 byte count, oversized frames fail on their header with a
 * clear message, and arbitrary bytes never throw.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import fc from "fast-check"
import * as Frame from "../impl/wire/frame.ts"
import { params } from "./helpers/fc.ts"
import { splitAt } from "./helpers/bytes.ts"

type Outcome = { readonly frame: string } | { readonly error: string }

/** Push every piece; scribble over each one afterwards to check the decoder keeps no view. */
const decodeAll = (pieces: ReadonlyArray<Buffer>, options: Frame.DecoderOptions = {}) => {
  const decoder = new Frame.FrameDecoder(options)
  const outcomes: Array<Outcome> = []
  for (const piece of pieces) {
    const { frames, error } = decoder.push(piece)
    piece.fill(0xaa)
    for (const frame of frames) outcomes.push({ frame })
    if (error !== undefined) {
      outcomes.push({ error: error.message })
      const again = decoder.push(Buffer.from(Frame.encodeFrame("{}")))
      assert.deepEqual(again, { frames: [], error }, "the error is sticky")
      break
    }
  }
  return { decoder, outcomes }
}

const payload = fc.oneof(
  fc.string({ unit: "binary", maxLength: 60 }),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.constant(""),
)
const payloads = fc.array(payload, { maxLength: 30 })
const cuts = fc.array(fc.nat(), { maxLength: 40 })

const framesOf = (ps: ReadonlyArray<string>): Array<Outcome> => ps.map((frame) => ({ frame }))

test("FRAME-1: any split of a stream of frames yields the same payloads", () => {
  fc.assert(
    fc.property(payloads, cuts, (ps, cutAt) => {
      const { decoder, outcomes } = decodeAll(splitAt(Frame.encodeFrames(ps), cutAt))
      assert.deepEqual(outcomes, framesOf(ps))
      assert.equal(decoder.bufferedBytes, 0)
    }),
    params(300),
  )
})

test("FRAME-1: a stream of frames fed byte by byte yields the same payloads", () => {
  fc.assert(
    fc.property(payloads, (ps) => {
      const wire = Frame.encodeFrames(ps)
      const pieces = [...wire].map((b) => Buffer.from([b]))
      assert.deepEqual(decodeAll(pieces).outcomes, framesOf(ps))
    }),
    params(100),
  )
})

test("FRAME-2: a frame is the big-endian UTF-8 byte count, then the UTF-8 payload", () => {
  fc.assert(
    fc.property(payloads, (ps) => {
      const encoded = ps.map(Frame.encodeFrame)
      assert.deepEqual(Frame.encodeFrames(ps), Buffer.concat(encoded), "a batch is the concat")
      ps.forEach((p, i) => {
        const frame = encoded[i]!
        const utf8 = Buffer.from(p, "utf8")
        assert.equal(frame.readUInt32BE(0), utf8.length)
        assert.deepEqual(frame.subarray(Frame.HEADER_BYTES), utf8)
      })
    }),
    params(300),
  )
  assert.deepEqual(Frame.encodeFrame(""), Buffer.from([0, 0, 0, 0]))
  assert.deepEqual(Frame.encodeFrame("é"), Buffer.from([0, 0, 0, 2, 0xc3, 0xa9]))
  assert.deepEqual(Frame.encodeFrames([]), Buffer.alloc(0))
})

/** A header announcing `frameBytes`, with no body. */
const header = (frameBytes: number): Buffer => {
  const out = Buffer.alloc(Frame.HEADER_BYTES)
  out.writeUInt32BE(frameBytes)
  return out
}

test("FRAME-3: an oversized frame fails on its header, after the frames before it", () => {
  fc.assert(
    fc.property(
      fc.nat({ max: 200 }),
      fc.integer({ min: 1, max: 0xffff_ffff }),
      payloads,
      cuts,
      (max, over, ps, cutAt) => {
        const fitting = ps.filter((p) => Buffer.byteLength(p) <= max)
        const frameBytes = Math.min(max + over, 0xffff_ffff)
        const wire = Buffer.concat([Frame.encodeFrames(fitting), header(frameBytes)])
        const { outcomes } = decodeAll(splitAt(wire, cutAt), { frameBytesMax: max })
        assert.deepEqual(outcomes, [
          ...framesOf(fitting),
          { error: `frame too large: ${frameBytes} bytes > limit ${max}` },
        ])
      },
    ),
    params(300),
  )
})

test("FRAME-3: the default limit is 64 MiB, and a frame at the limit is accepted", () => {
  const max = 64 * 1024 * 1024
  assert.equal(Frame.FRAME_BYTES_MAX_DEFAULT, max)
  const over = new Frame.FrameDecoder().push(header(max + 1))
  assert.ok(over.error instanceof Frame.FrameTooLarge)
  assert.equal(over.error.message, `frame too large: ${max + 1} bytes > limit ${max}`)
  assert.equal(over.error.frameBytes, max + 1)
  assert.equal(over.error.frameBytesMax, max)
  const decoder = new Frame.FrameDecoder()
  assert.deepEqual(decoder.push(header(max)), { frames: [], error: undefined })
  assert.equal(decoder.bufferedBytes, Frame.HEADER_BYTES, "waiting for the body")
})

/** Bytes that are sometimes frames: random soup, and valid streams with bytes overwritten. */
const fuzzedStream = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
  fc
    .tuple(payloads, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 3 }))
    .map(([ps, edits]) => {
      const data = Buffer.from(Frame.encodeFrames(ps))
      for (const [at, byte] of edits) if (data.length > 0) data[at % data.length] = byte
      return data
    }),
)

test("FRAME-4: arbitrary bytes never throw, and every split gives the same outcomes", () => {
  fc.assert(
    fc.property(fuzzedStream, cuts, fc.nat({ max: 100 }), (data, cutAt, max) => {
      const options = { frameBytesMax: max }
      const whole = decodeAll([Buffer.from(data)], options)
      const split = decodeAll(splitAt(data, cutAt), options)
      assert.deepEqual(split.outcomes, whole.outcomes)
      assert.equal(split.decoder.bufferedBytes, whole.decoder.bufferedBytes)
    }),
    params(500),
  )
})

/** Linear decoding takes well under a second here; a quadratic one would take hours. The budget
 * is checked inside the loop because node:test cannot time out a synchronous test. */

test("FRAME-5: large frames fed byte by byte decode exactly", () => {
  const big = JSON.stringify({ value: "v".repeat(1 << 20) })
  const small = Array.from({ length: 20_000 }, (_, i) => JSON.stringify({ i }))
  const wire = Frame.encodeFrames([big, ...small])
  const decoder = new Frame.FrameDecoder()
  const frames: Array<string> = []
  const one = Buffer.alloc(1)
  for (let i = 0; i < wire.length; i++) {
    one[0] = wire[i]!
    const decoded = decoder.push(one)
    assert.equal(decoded.error, undefined)
    frames.push(...decoded.frames)
  }
  assert.deepEqual(frames, [big, ...small])
  assert.equal(decoder.bufferedBytes, 0)
})
