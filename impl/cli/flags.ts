/**
 * Flags that `dht node` and `dht cluster` share: what each node of a cluster is, stated once.
 * `dht cluster` passes every one it was given on to each node it starts (`passOn`).
 */
import * as Args from "./args.ts"

export const replication: ReadonlyArray<Args.Flag> = [
  Args.flag("n", "int", "N", "replicas per key", "min(3, nodes)"),
  Args.flag("r", "int", "R", "read quorum", "min(2, n)"),
  Args.flag("w", "int", "W", "write quorum", "min(2, n)"),
]

/**
 * N, R and W of a local cluster of `k` nodes, with their defaults, checked against each other;
 * a number is a usage error already reported (its exit status), as `Args.usageError` returns.
 */
export const replicationOf = (
  spec: Args.CommandSpec,
  v: Args.Values,
  k: number,
): { readonly n: number; readonly r: number; readonly w: number } | number => {
  const n = Args.num(v, "n") ?? Math.min(3, k)
  if (n < 1 || n > k) {
    return Args.usageError(spec, `--n must be from 1 to the node count ${k}, got ${n}`)
  }
  const r = Args.num(v, "r") ?? Math.min(2, n)
  const w = Args.num(v, "w") ?? Math.min(2, n)
  for (const [name, q] of [
    ["r", r],
    ["w", w],
  ] as const) {
    if (q < 1 || q > n) return Args.usageError(spec, `--${name} must be from 1 to n=${n}, got ${q}`)
  }
  return { n, r, w }
}

/** Node behaviour, passed on verbatim by `dht cluster`. */
export const behaviour: ReadonlyArray<Args.Flag> = [
  Args.flag("store", "string", "lmdb|memory", "storage engine", "lmdb"),
  Args.flag(
    "cluster",
    "string",
    "NAME",
    "cluster name; peers of another cluster are refused",
    "dht",
  ),
  Args.flag("max-value-bytes", "bytes", "SIZE", "largest value accepted, 512k..8m", "1m"),
  Args.flag(
    "lww",
    "string",
    "PREFIXES",
    'last-write-wins key prefixes, comma-separated ("*": every key); other keys keep concurrent writes as siblings',
    "none",
  ),
  Args.flag(
    "mode",
    "string",
    "ap|cp",
    "ap: sloppy quorum + hinted handoff (always writable); cp: strict quorums, a partitioned minority refuses writes",
    "ap",
  ),
  Args.flag(
    "routing",
    "string",
    "ring|chord",
    "ring: one-hop routing on gossiped membership; chord: Chord finger tables, O(log N) state and hops (--peers are then seeds to join through; the first one creates the ring)",
    "ring",
  ),
  Args.flag(
    "secret",
    "string",
    "SECRET",
    "key of the MAC on causal context tokens (same on every node)",
    "derived from --cluster",
  ),
  Args.flag(
    "tombstone-grace-ms",
    "int",
    "MS",
    "a deleted or expired key is reclaimed (removed on every replica) no sooner than this after it died",
    "600000",
  ),
  Args.flag(
    "max-message-age-ms",
    "int",
    "MS",
    "a peer message carrying data older than this is dropped; reclamation waits this long (must exceed --request-timeout-ms)",
    "30000",
  ),
  Args.flag(
    "max-clock-skew-ms",
    "int",
    "MS",
    "assumed bound on the clock difference between two nodes (a margin of reclamation)",
    "1000",
  ),
]

/** The `--name value` arguments that repeat, for a node, the behaviour flags given here. */
export const passOn = (values: Args.Values): Array<string> => {
  const out: Array<string> = []
  for (const f of behaviour) {
    const value = values[f.name]
    if (value !== undefined) out.push(`--${f.name}`, String(value))
  }
  return out
}
