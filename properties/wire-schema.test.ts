/**
 * Properties of the peer wire codecs (impl/wire/schema.ts): every message the schemas describe
 * survives encode → JSON → frame → any chunking → decode unchanged; the transport's bare
 * JSON.stringify encoder agrees with Schema.encode; and garbage — random bytes, random JSON,
 * valid messages with a field broken — is rejected with an error value, never a throw.
 */
import assert from "node:assert/strict"
import { test } from "./helpers/test.ts"
import { Arbitrary, Either, Schema } from "effect"
import fc from "fast-check"
import type { ClientResult, PeerMessage } from "../impl/core/messages.ts"
import { RequestErrorSchema } from "../impl/core/failure.ts"
import { encodeFrame, encodeFrames, FrameDecoder } from "../impl/wire/frame.ts"
import {
  ClientResultSchema,
  decodeHello,
  decodePeerMessage,
  encodeJson,
  HelloSchema,
  ObjSchema,
  PeerMessageSchema,
  PutOpSchema,
  WireError,
} from "../impl/wire/schema.ts"
import { params } from "./helpers/fc.ts"
import { splitAt } from "./helpers/bytes.ts"

const peerMessages = Arbitrary.make(PeerMessageSchema)
/**
 * A failed coordinate response: one of some thirty message kinds, so plain `peerMessages` draws
 * one in only a few runs of 200; WIRE-1 puts one in every case so its typed-failure check always
 * has something to check.
 */
const failedResponses: fc.Arbitrary<PeerMessage> = fc.record({
  _tag: fc.constant("CoordinateResponse" as const),
  rid: fc.nat(),
  result: fc.record({
    _tag: fc.constant("Failed" as const),
    error: Arbitrary.make(RequestErrorSchema),
  }),
})
const hellos = Arbitrary.make(HelloSchema)

/** JSON turns -0 into 0; the schemas' integers never produce -0, but compare robustly. */
const viaJson = <A>(value: A): A => JSON.parse(JSON.stringify(value)) as A

test("WIRE-1: every peer message round-trips through encode, JSON, frames and decode", () => {
  const encode = Schema.encodeSync(PeerMessageSchema)
  let failures = 0
  let cases = 0
  fc.assert(
    fc.property(
      fc.array(peerMessages, { minLength: 0, maxLength: 7 }),
      failedResponses,
      fc.nat(),
      fc.array(fc.nat()),
      (others, failed, at, cuts) => {
        cases++
        const messages = [...others]
        messages.splice(at % (others.length + 1), 0, failed)
        const payloads = messages.map((m) => JSON.stringify(encode(m)))
        const decoder = new FrameDecoder()
        const decoded: Array<PeerMessage> = []
        for (const piece of splitAt(encodeFrames(payloads), cuts)) {
          const { frames, error } = decoder.push(piece)
          assert.equal(error, undefined)
          for (const frame of frames) {
            const result = decodePeerMessage(frame)
            assert.ok(Either.isRight(result), Either.isLeft(result) ? result.left.reason : "")
            decoded.push(result.right)
          }
        }
        assert.deepStrictEqual(decoded.map(viaJson), messages.map(viaJson))
        // A failure comes back as its own class (impl/core/failure.ts), with the same message.
        decoded.forEach((m, i) => {
          if (m._tag !== "CoordinateResponse" || m.result._tag !== "Failed") return
          const sent = messages[i]!
          assert.ok(sent._tag === "CoordinateResponse" && sent.result._tag === "Failed")
          assert.ok(m.result.error instanceof Error, "a failure decodes into its error class")
          assert.equal(
            Object.getPrototypeOf(m.result.error),
            Object.getPrototypeOf(sent.result.error),
          )
          assert.equal(m.result.error.message, sent.result.error.message)
          failures++
        })
      },
    ),
    params(200),
  )
  assert.ok(cases > 0 && failures >= cases, `each case sent a typed failure: ${failures}/${cases}`)
})

test("WIRE-2: the transport's JSON.stringify encoder equals Schema.encode", () => {
  const encode = Schema.encodeSync(PeerMessageSchema)
  fc.assert(
    fc.property(peerMessages, (message) => {
      assert.equal(encodeJson(message), JSON.stringify(encode(message)))
    }),
    params(200),
  )
})

test("WIRE-3: Hello round-trips; a Hello is not a peer message and vice versa", () => {
  fc.assert(
    fc.property(hellos, peerMessages, (hello, message) => {
      const frame = new FrameDecoder().push(encodeFrame(encodeJson(hello))).frames[0]!
      assert.deepStrictEqual(Either.getOrThrow(decodeHello(frame)), viaJson(hello))
      assert.ok(Either.isLeft(decodePeerMessage(frame)))
      assert.ok(Either.isLeft(decodeHello(encodeJson(message))))
    }),
    params(100),
  )
})

test("WIRE-4: objects, put operations and client results round-trip through JSON", () => {
  for (const schema of [ObjSchema, PutOpSchema, ClientResultSchema] as const) {
    const decode = Schema.decodeUnknownEither(schema as Schema.Schema<unknown, unknown>)
    fc.assert(
      fc.property(Arbitrary.make(schema as Schema.Schema<unknown, unknown>), (value) => {
        const back = Either.getOrThrow(decode(JSON.parse(JSON.stringify(value))))
        assert.deepStrictEqual(viaJson(back), viaJson(value))
        // A failed result decodes into the failure's own class.
        const failed = (v: unknown) => (v as ClientResult)._tag === "Failed"
        if (failed(value)) {
          const error = (r: unknown) => (r as ClientResult & { _tag: "Failed" }).error
          assert.ok(error(back) instanceof Error, "a failure decodes into its error class")
          assert.equal(Object.getPrototypeOf(error(back)), Object.getPrototypeOf(error(value)))
        }
      }),
      params(100),
    )
  }
})

const mustReject = (payload: string | Uint8Array): void => {
  const decoders: ReadonlyArray<(p: string | Uint8Array) => Either.Either<unknown, WireError>> = [
    decodePeerMessage,
    decodeHello,
  ]
  for (const decode of decoders) {
    const result = decode(payload)
    assert.ok(Either.isLeft(result), `accepted ${String(payload).slice(0, 80)}`)
    assert.ok(result.left instanceof WireError)
    assert.ok(result.left.reason.length > 0 && !result.left.reason.includes("\n"))
  }
}

test("WIRE-5: garbage bytes never throw: frames decode to values or errors", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 512 }), fc.array(fc.nat()), (bytes, cuts) => {
      const decoder = new FrameDecoder({ frameBytesMax: 1024 })
      for (const piece of splitAt(Buffer.from(bytes), cuts)) {
        const { frames, error } = decoder.push(piece)
        for (const frame of frames) {
          // Either outcome is fine; a throw is not.
          decodePeerMessage(frame)
          decodeHello(frame)
        }
        if (error !== undefined) {
          assert.match(error.message, /frame too large/)
          break
        }
      }
    }),
    params(300),
  )
})

test("WIRE-6: JSON that is not a message is rejected with a WireError", () => {
  const notAMessage = fc.jsonValue().filter((v) => {
    const tag = (v as { _tag?: unknown } | null)?._tag
    return typeof v !== "object" || v === null || typeof tag !== "string"
  })
  fc.assert(
    fc.property(notAMessage, (value) => mustReject(JSON.stringify(value))),
    params(200),
  )
  for (const text of ["", "{", "nul", "[1,2", "\u0000", '{"_tag":"Heartbeat"']) mustReject(text)
  mustReject(Buffer.from([0xff, 0xfe, 0x00]))
})

test("WIRE-7: a valid message with one field broken is rejected", () => {
  const breakages = fc.constantFrom<(o: Record<string, unknown>) => void>(
    (o) => {
      o._tag = "NoSuchMessage"
    },
    (o) => {
      delete o._tag
    },
    (o) => {
      for (const key of Object.keys(o)) if (key !== "_tag") o[key] = { nested: [1, "x"] }
    },
    (o) => {
      if ("rid" in o) o.rid = -1
      else o._tag = 42
    },
    (o) => {
      if ("rid" in o) o.rid = 1.5
      else o._tag = null
    },
  )
  fc.assert(
    fc.property(peerMessages, breakages, (message, breakIt) => {
      const broken = JSON.parse(encodeJson(message)) as Record<string, unknown>
      const before = JSON.stringify(broken)
      breakIt(broken)
      // Breaking a field-less message may leave it valid (e.g. Heartbeat with no other field).
      if (JSON.stringify(broken) === before) return
      const result = decodePeerMessage(JSON.stringify(broken))
      assert.ok(Either.isLeft(result), `accepted ${JSON.stringify(broken).slice(0, 120)}`)
    }),
    params(300),
  )
})

test("WIRE-8: an oversized length prefix fails on the header, before the body arrives", () => {
  const decoder = new FrameDecoder({ frameBytesMax: 1024 })
  const header = Buffer.alloc(4)
  header.writeUInt32BE(0xffff_ffff)
  const { frames, error } = decoder.push(header)
  assert.deepEqual(frames, [])
  assert.match(error?.message ?? "", /frame too large: 4294967295 bytes > limit 1024/)
})
