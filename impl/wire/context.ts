/**
 * Causal context tokens: the opaque, compact string a client gets from `DHT.GET` and hands back
 * with `DHT.PUT … CONTEXT`. It carries a version vector, so a forged or corrupted token could
 * make a write silently supersede values its client never saw; every token is therefore
 * authenticated with a MAC keyed by the cluster secret and validated on the way in. A bad token
 * gets a clear error, never a crash and never a write.
 *
 * Layout (then base64url): version byte 1, entry count (varint), per entry: actor length (1 byte),
 * actor bytes (latin1), counter (varint); then the first 8 bytes of HMAC-SHA256(secret, body).
 *
 * Deliberately not here: secrecy (the token is readable; it is not an access credential).
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import { Data } from "effect"
import type { Clock } from "../core/version.ts"

const VERSION = 1
const MAC_BYTES = 8
/** A clock has one entry per coordinating replica; far more than any sane N. */
const ENTRIES_MAX = 64
const ACTOR_BYTES_MAX = 255

export class ContextError extends Data.TaggedError("ContextError")<{
  readonly reason: "Malformed" | "Forged"
  readonly message: string
}> {}

const mac = (secret: string, body: Buffer): Buffer =>
  createHmac("sha256", secret).update(body).digest().subarray(0, MAC_BYTES)

const pushVarint = (out: Array<number>, n: number): void => {
  let v = n
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80)
    v = Math.floor(v / 0x80)
  }
  out.push(v)
}

export const encode = (clock: Clock, secret: string): string => {
  const bytes: Array<number> = [VERSION]
  pushVarint(bytes, clock.length)
  for (const [actor, counter] of clock) {
    bytes.push(actor.length)
    for (let i = 0; i < actor.length; i++) bytes.push(actor.charCodeAt(i) & 0xff)
    pushVarint(bytes, counter)
  }
  const body = Buffer.from(bytes)
  return Buffer.concat([body, mac(secret, body)]).toString("base64url")
}

const malformed = (why: string) =>
  new ContextError({ reason: "Malformed", message: `invalid causal context: ${why}` })

/** Decode and authenticate a token; a ContextError says what is wrong with it. */
export const decode = (token: string, secret: string): Clock | ContextError => {
  if (!/^[A-Za-z0-9_-]*$/.test(token) || token.length > 8192) return malformed("not a token")
  const raw = Buffer.from(token, "base64url")
  if (raw.length < 1 + 1 + MAC_BYTES) return malformed("too short")
  const body = raw.subarray(0, raw.length - MAC_BYTES)
  if (!timingSafeEqual(raw.subarray(raw.length - MAC_BYTES), mac(secret, body))) {
    return new ContextError({
      reason: "Forged",
      message: "invalid causal context: authentication failed (corrupted, or from another cluster)",
    })
  }
  let at = 0
  const varint = (): number | undefined => {
    let n = 0
    let scale = 1
    for (let i = 0; i < 8; i++) {
      const b = body[at++]
      if (b === undefined) return undefined
      n += (b & 0x7f) * scale
      if ((b & 0x80) === 0) return n
      scale *= 0x80
    }
    return undefined
  }
  if (body[at++] !== VERSION) return malformed("unknown version")
  const count = varint()
  if (count === undefined || count > ENTRIES_MAX) return malformed("bad entry count")
  const clock: Array<readonly [string, number]> = []
  for (let i = 0; i < count; i++) {
    const length = body[at++]
    if (length === undefined || length === 0 || length > ACTOR_BYTES_MAX) {
      return malformed("bad actor")
    }
    if (at + length > body.length) return malformed("truncated")
    const actor = body.subarray(at, at + length).toString("latin1")
    at += length
    const counter = varint()
    if (counter === undefined || counter < 1 || !Number.isSafeInteger(counter)) {
      return malformed("bad counter")
    }
    const previous = clock[clock.length - 1]
    if (previous !== undefined && previous[0] >= actor) return malformed("actors out of order")
    clock.push([actor, counter])
  }
  if (at !== body.length) return malformed("trailing bytes")
  return clock
}
