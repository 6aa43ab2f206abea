/**
 * Redis's glob patterns (SCAN … MATCH, KEYS): `*` any run of bytes, `?` one byte, `[abc]`,
 * `[^a]` and `[a-z]` classes, `\x` a literal x. Case-sensitive, over byte strings (one char per
 * byte). Owns nothing but the matcher. Must not: build a regular expression from client input.
 *
 * Backtracking on the last `*` only (the classic two-pointer matcher), so a match costs
 * O(pattern × key) in the worst case, never exponential time.
 */

/** Does the class starting at pattern[p] (just after `[`) match c? Returns [matched, end]. */
const matchClass = (pattern: string, p: number, c: string): readonly [boolean, number] => {
  let negate = false
  if (pattern[p] === "^") {
    negate = true
    p++
  }
  let matched = false
  let first = true
  while (p < pattern.length && (first || pattern[p] !== "]")) {
    first = false
    let lo = pattern[p]!
    if (lo === "\\" && p + 1 < pattern.length) lo = pattern[++p]!
    if (pattern[p + 1] === "-" && p + 2 < pattern.length && pattern[p + 2] !== "]") {
      let hi = pattern[p + 2]!
      let next = p + 3
      if (hi === "\\" && p + 3 < pattern.length) {
        hi = pattern[p + 3]!
        next = p + 4
      }
      const [a, b] = lo <= hi ? [lo, hi] : [hi, lo]
      if (c >= a && c <= b) matched = true
      p = next
    } else {
      if (c === lo) matched = true
      p++
    }
  }
  // An unclosed class matches like Redis: up to the end of the pattern.
  return [matched !== negate, p < pattern.length ? p + 1 : p]
}

/** True when `key` matches the glob `pattern`. */
export const matches = (pattern: string, key: string): boolean => {
  let p = 0
  let k = 0
  let starP = -1
  let starK = 0
  while (k < key.length) {
    const c = pattern[p]
    if (c === "*") {
      starP = ++p
      starK = k
      continue
    }
    if (c !== undefined) {
      if (c === "?") {
        p++
        k++
        continue
      }
      if (c === "[") {
        const [ok, end] = matchClass(pattern, p + 1, key[k]!)
        if (ok) {
          p = end
          k++
          continue
        }
      } else {
        const literal = c === "\\" && p + 1 < pattern.length ? pattern[p + 1]! : c
        if (literal === key[k]) {
          p += c === "\\" && p + 1 < pattern.length ? 2 : 1
          k++
          continue
        }
      }
    }
    if (starP < 0) return false
    p = starP
    k = ++starK
  }
  while (pattern[p] === "*") p++
  return p === pattern.length
}
