/**
 * Mutation targets for `npm run mutate` (mutate/run.ts): each file of impl/core under test, and
 * the fast property suites that exercise it. Stryker's command runner runs these suites once per
 * mutant, first to last, stopping at the first that fails, so the suite that checks the module
 * directly comes first and slow simulations are left out where a faster suite covers the same
 * code. No e2e suite (properties/e2e-*.test.ts) is ever listed: they start real processes.
 *
 * Picked from the import graph (which suites import the module, directly or through node.ts)
 * and the suites' running times on 2 cores; see docs/verification.md, "Mutation testing".
 */

export interface Target {
  /** The mutated file. */
  readonly file: string
  /** Property suites, in the order they run against each mutant. */
  readonly suites: ReadonlyArray<string>
}

const p = (name: string): string => `properties/${name}.test.ts`

/**
 * The machine-level suites that step Node.step (quorums, placement, replicas, reaping), fastest
 * first (about 1.6 to 3.4 s each on 2 cores, then kv-model 8 s and write-once 14 s): a survivor
 * runs them all, a killed mutant only up to the first that fails.
 */
const machine = [
  "at-most-once",
  "node",
  "adversarial",
  "handoff",
  "partition",
  "reclaim",
  "kv-model",
  "write-once",
].map(p)

export const targets: Readonly<Record<string, Target>> = {
  hlc: {
    file: "impl/core/hlc.ts",
    suites: ["lww", "reclaim", "adversarial", "mutation-gaps"].map(p),
  },
  quorum: {
    file: "impl/core/quorum.ts",
    suites: [p("mutation-gaps"), ...machine],
  },
  hash: {
    file: "impl/core/hash.ts",
    suites: ["ring", "merkle", "mutation-gaps"].map(p),
  },
  ring: {
    file: "impl/core/ring.ts",
    suites: ["ring", "write-once", "node", "mutation-gaps"].map(p),
  },
  version: {
    file: "impl/core/version.ts",
    suites: [
      "mutation-gaps",
      "version",
      "context",
      "lww",
      "expiry-model",
      "counter-sim",
      "reclaim",
      "store",
    ].map(p),
  },
  phi: {
    file: "impl/core/phi.ts",
    suites: ["mutation-gaps", "membership"].map(p),
  },
  merkle: {
    file: "impl/core/merkle.ts",
    suites: [
      "merkle-protocol",
      "merkle",
      "anti-entropy-refusals",
      "anti-entropy-node",
      "mutation-gaps",
    ].map(p),
  },
  membership: {
    file: "impl/core/membership.ts",
    suites: ["membership-legs", "membership", "rebalance", "mutation-gaps"].map(p),
  },
  "anti-entropy": {
    file: "impl/core/anti-entropy.ts",
    suites: ["anti-entropy-refusals", "merkle", "anti-entropy-node", "mutation-gaps"].map(p),
  },
  "node-placement": {
    file: "impl/core/node-placement.ts",
    suites: [...machine, p("rebalance"), p("mutation-gaps")],
  },
  "node-reap": {
    file: "impl/core/node-reap.ts",
    suites: [
      p("reaper"),
      p("reclaim"),
      ...machine.filter((s) => s !== p("reclaim")),
      p("mutation-gaps"),
    ],
  },
  "node-replica": {
    file: "impl/core/node-replica.ts",
    suites: [p("replica"), ...machine, p("mutation-gaps")],
  },
  // The rest of the storage node: node.ts composes, each node-*.ts is one slice of it. The
  // machine suites reach all of them; a slice's own suite (where one exists) goes first.
  node: {
    file: "impl/core/node.ts",
    suites: [
      p("replica"),
      p("get-path"),
      p("put-path"),
      ...machine,
      p("rebalance"),
      p("mutation-gaps"),
    ],
  },
  "node-store": {
    file: "impl/core/node-store.ts",
    suites: [
      p("store-writer"),
      p("replica"),
      p("get-path"),
      p("reaper"),
      ...machine,
      p("anti-entropy-node"),
      p("mutation-gaps"),
    ],
  },
  // node-state's reply helpers count failures, which put-path and forward-path check.
  "node-state": {
    file: "impl/core/node-state.ts",
    suites: [p("policy"), p("put-path"), p("forward-path"), ...machine, p("mutation-gaps")],
  },
  "node-config": {
    file: "impl/core/node-config.ts",
    suites: [p("policy"), ...machine, p("mutation-gaps")],
  },
  "node-get": {
    file: "impl/core/node-get.ts",
    suites: [p("get-path"), ...machine, p("mutation-gaps")],
  },
  "node-put": {
    file: "impl/core/node-put.ts",
    suites: [p("put-path"), ...machine, p("put-semantics"), p("mutation-gaps")],
  },
  "node-forward": {
    file: "impl/core/node-forward.ts",
    suites: [p("forward-path"), ...machine, p("request-path-sim"), p("mutation-gaps")],
  },
  "node-ae": {
    file: "impl/core/node-ae.ts",
    suites: [p("anti-entropy-node"), ...machine, p("mutation-gaps")],
  },
  "node-membership": {
    file: "impl/core/node-membership.ts",
    suites: [p("operator-path"), ...machine, p("rebalance"), p("routing-fd"), p("mutation-gaps")],
  },
  "node-rebalance": {
    file: "impl/core/node-rebalance.ts",
    suites: [p("rebalance-path"), p("rebalance"), ...machine, p("mutation-gaps")],
  },
  "node-scan": {
    file: "impl/core/node-scan.ts",
    suites: [
      p("scan-path"),
      p("scan"),
      p("rebalance"),
      p("anti-entropy-node"),
      p("reclaim"),
      p("mutation-gaps"),
    ],
  },
  "node-chord": {
    file: "impl/core/node-chord.ts",
    suites: [p("chord-node"), p("chord"), p("mutation-gaps")],
  },
  "get-coordinator": {
    file: "impl/core/get-coordinator.ts",
    suites: [p("coordinators"), ...machine],
  },
  // The coordinator suites kill most mutants at once (its replica protocol, then its command
  // semantics); of the machine suites, those whose operations the coordinator decides (plain,
  // conditional, counter and expiring writes).
  "put-coordinator": {
    file: "impl/core/put-coordinator.ts",
    suites: [
      "coordinators",
      "put-semantics",
      "node",
      "adversarial",
      "counter-sim",
      "expiry-model",
    ].map(p),
  },
}

/** The order `npm run mutate` with no argument runs them in: smallest files first. */
export const defaultOrder = [
  "hlc",
  "quorum",
  "hash",
  "ring",
  "version",
  "phi",
  "get-coordinator",
  "put-coordinator",
  "merkle",
  "membership",
  "anti-entropy",
  "node-placement",
  "node-reap",
  "node-replica",
  "node-store",
  "node-state",
  "node-config",
  "node-get",
  "node-put",
  "node-forward",
  "node-ae",
  "node-membership",
  "node-rebalance",
  "node-scan",
  "node-chord",
  "node",
]
