/**
 * Measures gossip convergence in the deterministic simulator (impl/sim/gossip-sim.ts): how many
 * gossip rounds until every node's view holds every member at its latest version, for several
 * cluster sizes and seeds, compared with log2 N.
 *
 *   npx tsx impl/cli/sim-gossip.ts [--nodes 10,100,1000] [--seed S] [--runs R]
 *                                  [--scenarios bootstrap,join,change,heal,unsuspect]
 *                                  [--loss P]
 *
 * Scenarios:
 *  - bootstrap: every node starts up knowing only the seed n0 (a cold start without peers
 *    tables); done when every view holds all N members.
 *  - join: N-1 members know each other; node N-1 knows only the seed and joins; done when
 *    every view holds it as joining. Measured from the JoinRequested.
 *  - change: N members know each other; after 3 warm-up rounds one random non-seed member
 *    starts leaving; done when every view holds its new version. Measured from the request.
 *  - heal, unsuspect (not run by default): two halves partitioned for 45 rounds, one member
 *    of each starts leaving; measured from the heal until every view holds both changes
 *    (heal), or until no node suspects another (unsuspect).
 *
 * A round is one gossip interval (every node initiates one exchange per round). Runs use seeds
 * S, S+1, ..., S+R-1 and are reproducible from them.
 */
import * as Membership from "../core/membership.ts"
import { GossipSim } from "../sim/gossip-sim.ts"

type Scenario = "bootstrap" | "join" | "change" | "heal" | "unsuspect"

interface Options {
  readonly nodes: ReadonlyArray<number>
  readonly seed: number
  readonly runs: number
  readonly scenarios: ReadonlyArray<Scenario>
  readonly loss: number
}

const parse = (argv: ReadonlyArray<string>): Options => {
  const get = (flag: string): string | undefined => {
    const i = argv.indexOf(flag)
    return i >= 0 ? argv[i + 1] : undefined
  }
  const scenarios = (get("--scenarios") ?? "bootstrap,join,change").split(",")
  const known = ["bootstrap", "join", "change", "heal", "unsuspect"]
  for (const s of scenarios) if (!known.includes(s)) throw new Error(`scenario ${s}?`)
  return {
    nodes: (get("--nodes") ?? "10,100,1000").split(",").map(Number),
    seed: Number(get("--seed") ?? 1),
    runs: Number(get("--runs") ?? 5),
    scenarios: scenarios as Array<Scenario>,
    loss: Number(get("--loss") ?? 0),
  }
}

const LIMIT_ROUNDS = 500
const WARMUP_ROUNDS = 3
/** Long enough for both sides of a partition to suspect each other (37 rounds at most). */
const PARTITION_ROUNDS = 45

/**
 * Watch until every running node's view holds each target (id -> generation, version) at
 * least as new. Each node is re-checked only when it steps; views only grow newer here.
 */
const watch = (sim: GossipSim, targets: ReadonlyArray<Membership.Entry>): (() => boolean) => {
  const satisfied = new Array<boolean>(sim.nodes.length).fill(false)
  let count = 0
  const holds = (i: number): boolean => {
    const state = sim.node(i).state
    if (state === undefined) return false
    for (const t of targets) {
      const e = state.entries.get(t.id)
      if (e === undefined) return false
      if (e.generation < t.generation) return false
      if (e.generation === t.generation && e.version < t.version) return false
    }
    return true
  }
  for (let i = 0; i < sim.nodes.length; i++) {
    if (holds(i)) {
      satisfied[i] = true
      count++
    }
  }
  sim.onStep = (node) => {
    if (satisfied[node.index] || !holds(node.index)) return
    satisfied[node.index] = true
    count++
  }
  return () => count === sim.nodes.length
}

/**
 * Watch until no running node suspects a running node. A node is re-checked when it steps
 * (phi only falls when a heartbeat arrives, which is a step).
 */
const watchUnsuspected = (sim: GossipSim): (() => boolean) => {
  const clear = new Array<boolean>(sim.nodes.length).fill(false)
  let count = 0
  const check = (i: number): void => {
    const state = sim.node(i).state
    const now = state !== undefined && Membership.down(state, sim.now).length === 0
    if (now !== clear[i]) count += now ? 1 : -1
    clear[i] = now
  }
  for (let i = 0; i < sim.nodes.length; i++) check(i)
  sim.onStep = (node) => check(node.index)
  return () => count === sim.nodes.length
}

/** Rounds until convergence for one run, or undefined if it did not converge in the limit. */
const measure = (scenario: Scenario, n: number, seed: number, loss: number): number | undefined => {
  if (scenario === "heal" || scenario === "unsuspect") return measureHeal(scenario, n, seed, loss)
  const network = { latencyMinMs: 5, latencyMaxMs: 50, lossRate: loss }
  const sim = new GossipSim({
    seed,
    nodes: n,
    network,
    start: scenario === "bootstrap" ? "seedOnly" : "converged",
    members: scenario === "join" ? n - 1 : n,
  })
  const interval = sim.intervalMs
  if (scenario !== "bootstrap") sim.runFor(WARMUP_ROUNDS * interval)
  const start = sim.now
  if (scenario === "join") sim.intent(n - 1, { _tag: "JoinRequested" })
  if (scenario === "change") {
    // A non-seed member, chosen by the seed so that runs differ.
    sim.intent(1 + (seed % (n - 1)), { _tag: "LeaveRequested" })
  }
  const targets: Array<Membership.Entry> = []
  for (const node of sim.nodes) {
    const own = node.state === undefined ? undefined : Membership.selfEntry(node.state)
    if (own === undefined) continue
    if (scenario === "bootstrap" || node.index === n - 1 || own.status === "leaving") {
      targets.push(own)
    }
  }
  const done = watch(
    sim,
    scenario === "bootstrap" ? targets : targets.filter((t) => t.status !== "up"),
  )
  const at = sim.runUntil(done, LIMIT_ROUNDS * interval)
  return at === undefined ? undefined : (at - start) / interval
}

/**
 * heal / unsuspect: N members split into two halves (even and odd ids) for 45 rounds, during
 * which one member on each side starts leaving; then the partition heals. heal: rounds until
 * every view holds both changes; unsuspect: rounds until no node suspects another.
 */
const measureHeal = (
  scenario: "heal" | "unsuspect",
  n: number,
  seed: number,
  loss: number,
): number | undefined => {
  const sim = new GossipSim({
    seed,
    nodes: n,
    network: { latencyMinMs: 5, latencyMaxMs: 50, lossRate: loss },
    start: "converged",
  })
  const interval = sim.intervalMs
  sim.runFor(WARMUP_ROUNDS * interval)
  sim.partition(sim.nodes.map((node) => node.index % 2))
  sim.intent(2 % n, { _tag: "LeaveRequested" })
  sim.intent(3 % n, { _tag: "LeaveRequested" })
  sim.runFor(PARTITION_ROUNDS * interval)
  sim.heal()
  const start = sim.now
  const targets = [2 % n, 3 % n].map((i) => Membership.selfEntry(sim.node(i).state!)!)
  const done = scenario === "heal" ? watch(sim, targets) : watchUnsuspected(sim)
  const at = sim.runUntil(done, LIMIT_ROUNDS * interval)
  return at === undefined ? undefined : (at - start) / interval
}

const main = (): void => {
  const options = parse(process.argv.slice(2))
  const rows: Array<string> = []
  rows.push("| scenario  | N     | runs | mean rounds | max rounds | log2 N | mean / log2 N |")
  rows.push("| --------- | ----- | ---- | ----------- | ---------- | ------ | ------------- |")
  console.log(
    `gossip convergence: interval 1000 ms, latency 5-50 ms, loss ${options.loss}, ` +
      `simulation seeds ${options.seed}..${options.seed + options.runs - 1}`,
  )
  console.log("")
  console.log(rows.join("\n"))
  for (const scenario of options.scenarios) {
    for (const n of options.nodes) {
      const results: Array<number> = []
      let failed = 0
      for (let r = 0; r < options.runs; r++) {
        const rounds = measure(scenario, n, options.seed + r, options.loss)
        if (rounds === undefined) failed++
        else results.push(rounds)
      }
      const mean = results.reduce((a, b) => a + b, 0) / Math.max(1, results.length)
      const max = Math.max(...results)
      const log2 = Math.log2(n)
      const row =
        `| ${scenario.padEnd(9)} | ${String(n).padEnd(5)} | ${String(options.runs).padEnd(4)} | ` +
        `${mean.toFixed(2).padEnd(11)} | ${max.toFixed(2).padEnd(10)} | ` +
        `${log2.toFixed(2).padEnd(6)} | ${(mean / log2).toFixed(2).padEnd(13)} |` +
        (failed > 0 ? ` ${failed} run(s) did not converge in ${LIMIT_ROUNDS} rounds` : "")
      console.log(row)
    }
  }
}

main()
