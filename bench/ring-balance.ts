/**
 * Ring balance and movement: max/mean primary ownership for 10 nodes at the default token count,
 * and the fraction of keys that move when an 11th node joins, next to the ideal 1/11.
 * Run: npx tsx bench/ring-balance.ts [--tokens 256] [--keys 200000]
 */
import { utf8Bytes } from "../impl/core/hash.ts"
import { NodeId } from "../impl/core/ids.ts"
import * as Ring from "../impl/core/ring.ts"
import { arg } from "./lib.ts"

export const ringBalance = (tokens: number, keyCount: number) => {
  const members = (k: number) =>
    Array.from({ length: k }, (_, i) => ({ id: NodeId(`n${i}`), weight: 1 }))
  const before = Ring.make(members(10), tokens)
  const after = Ring.make(members(11), tokens)
  const own = [...Ring.ownership(before).values()]
  const mean = 1 / own.length
  const keys = Array.from({ length: keyCount }, (_, i) => utf8Bytes(`key:${i}`))
  let primaryMoved = 0
  let replicaSetChanged = 0
  let slotsMoved = 0
  for (const key of keys) {
    const a = Ring.preferenceList(before, key, 3)
    const b = Ring.preferenceList(after, key, 3)
    if (a[0] !== b[0]) primaryMoved++
    const moved = b.filter((n) => !a.includes(n)).length
    if (moved > 0) replicaSetChanged++
    slotsMoved += moved
  }
  return {
    tokens,
    maxOverMean: Math.max(...own) / mean,
    minOverMean: Math.min(...own) / mean,
    primaryMoved: primaryMoved / keyCount,
    replicaSetChanged: replicaSetChanged / keyCount,
    replicaSlotsMoved: slotsMoved / (3 * keyCount),
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const keyCount = arg("keys", 200_000)
  const rows = [16, 64, Ring.DEFAULT_TOKENS_PER_NODE, 1024].map((t) => ringBalance(t, keyCount))
  console.log(`Ring balance, 10 nodes; movement when an 11th joins (${keyCount} keys, N=3)`)
  console.log(
    "tokens/node  max/mean  min/mean  primary moved  (ideal 1/11=0.0909)  replica slots moved  key sets changed (ideal 3/11=0.273)",
  )
  for (const r of rows) {
    console.log(
      `${String(r.tokens).padStart(11)}  ${r.maxOverMean.toFixed(3).padStart(8)}  ${r.minOverMean.toFixed(3).padStart(8)}  ${r.primaryMoved.toFixed(4).padStart(13)}  ${"".padStart(20)}  ${r.replicaSlotsMoved.toFixed(4).padStart(19)}  ${r.replicaSetChanged.toFixed(4).padStart(16)}`,
    )
  }
}
