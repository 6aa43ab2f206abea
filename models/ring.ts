/**
 * Reference ring: the naive, obviously correct placement. Every (token, node) pair in a plain
 * sorted list; a key's preference list is found by scanning the whole list from the start.
 * Slow on purpose; properties/ring.test.ts compares impl/core/ring.ts against it (RING-2, RING-3).
 */
import { position } from "../impl/core/hash.ts"

export interface NaiveMember {
  readonly id: string
  readonly weight: number
}

export const naivePreferenceList = (
  members: ReadonlyArray<NaiveMember>,
  tokensPerNode: number,
  key: string,
  n: number,
): Array<string> => {
  const entries: Array<{ token: number; id: string }> = []
  for (const m of members) {
    const count = Math.max(1, Math.round(tokensPerNode * m.weight))
    for (let i = 0; i < count; i++) entries.push({ token: position(`${m.id}#${i}`), id: m.id })
  }
  entries.sort((a, b) => a.token - b.token || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  // Duplicate tokens: the first (smallest id) wins, as in the real ring.
  const unique = entries.filter((e, i) => i === 0 || entries[i - 1]!.token !== e.token)
  const p = position(key)
  const start = unique.findIndex((e) => e.token >= p)
  const rotated = start === -1 ? unique : [...unique.slice(start), ...unique.slice(0, start)]
  const out: Array<string> = []
  for (const e of rotated) {
    if (out.length === n) break
    if (!out.includes(e.id)) out.push(e.id)
  }
  return out
}
