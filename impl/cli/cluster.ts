/**
 * `dht cluster`: start K `dht node` processes on this machine, wait until each answers PING,
 * print where they are, relay their logs (each line prefixed with the node id), and stop them
 * all on Ctrl-C / SIGTERM (SIGTERM, then SIGKILL after a grace period).
 *
 * A node that dies is reported and the others keep running (that is the point of a cluster);
 * the command exits when every node has stopped. The children are separate OS processes, run
 * as `node --import tsx impl/cli/main.ts node …` from the repository root.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { Deferred, Effect, Either } from "effect"
import { awaitSignal, holdSignals } from "../node/main.ts"
import * as Args from "./args.ts"
import * as Flags from "./flags.ts"
import { pingOnce } from "./net.ts"
import * as Progress from "./progress.ts"
import * as Status from "./status.ts"
import { table } from "./table.ts"

const spec: Args.CommandSpec = {
  name: "cluster",
  summary: "start a local cluster of K node processes",
  usage: "dht cluster [--nodes 3] [options]",
  flags: [
    Args.flag("nodes", "int", "K", "number of nodes", "3"),
    Args.flag("host", "string", "HOST", "address every node listens on", "127.0.0.1"),
    Args.flag("base-client-port", "int", "PORT", "node i serves clients on PORT+i", "7001"),
    Args.flag("base-peer-port", "int", "PORT", "node i listens for peers on PORT+i", "8001"),
    Args.flag(
      "data-dir",
      "string",
      "DIR",
      "node i keeps its data in DIR/n<i> (kept on exit)",
      "a fresh temporary directory, removed on exit",
    ),
    ...Flags.replication,
    ...Flags.behaviour,
    Args.flag(
      "ready-timeout-ms",
      "int",
      "MS",
      "give up if a node does not answer PING (or, with --routing chord, the ring does not close) by then",
      "max(30000, 3000 per node)",
    ),
    Args.flag(
      "stop-grace-ms",
      "int",
      "MS",
      "SIGKILL nodes still running this long after SIGTERM",
      "5000",
    ),
  ],
  examples: [
    "dht cluster --nodes 3",
    "dht cluster --nodes 5 --n 3 --r 2 --w 2 --data-dir ./data",
    "dht cluster --routing chord --nodes 16",
    "redis-cli -p 7001 SET greeting hello && redis-cli -p 7003 GET greeting",
  ],
}

/** The repository root, where `--import tsx` resolves and impl/cli/main.ts lives. */
const repoRoot = fileURLToPath(new URL("../../", import.meta.url))
const mainScript = join(repoRoot, "impl", "cli", "main.ts")

interface Plan {
  readonly id: string
  readonly clientPort: number
  readonly peerPort: number
  readonly dataDir: string
  readonly args: ReadonlyArray<string>
}

interface Child {
  readonly plan: Plan
  readonly process: ChildProcess
  /** Completes with a description of how the process ended. */
  readonly exited: Deferred.Deferred<string>
}

const COLORS = [36, 33, 35, 32, 34, 91, 96, 93, 95, 92]

const prefixer = (id: string, index: number, width: number): ((line: string) => string) => {
  const label = id.padEnd(width)
  if (!process.stdout.isTTY) return (line) => `${label} | ${line}`
  const color = COLORS[index % COLORS.length]!
  return (line) => `\x1b[${color}m${label} |\x1b[0m ${line}`
}

const say = (line: string): void => {
  process.stdout.write(`${line}\n`)
}

const exitText = (code: number | null, signal: NodeJS.Signals | null): string =>
  signal !== null ? `killed by ${signal}` : `exited with code ${code}`

/** Spawn one node and relay its output, prefixed. */
const spawnChild = (plan: Plan, index: number, width: number): Effect.Effect<Child> =>
  Effect.gen(function* () {
    const exited = yield* Deferred.make<string>()
    const child = spawn(process.execPath, ["--import", "tsx", mainScript, "node", ...plan.args], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
      env: process.env,
    })
    const prefix = prefixer(plan.id, index, width)
    for (const stream of [child.stdout, child.stderr]) {
      if (stream === null) continue
      createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (line) =>
        say(prefix(line)),
      )
    }
    child.on("error", (e) =>
      Deferred.unsafeDone(exited, Effect.succeed(`could not start: ${e.message}`)),
    )
    child.on("exit", (code, signal) =>
      Deferred.unsafeDone(exited, Effect.succeed(exitText(code, signal))),
    )
    return { plan, process: child, exited }
  })

/** Poll PING until it answers, the child exits, or the deadline passes. */
const waitReady = (child: Child, host: string, deadline: number): Effect.Effect<void, string> =>
  Effect.gen(function* () {
    for (let delayMs = 50; ; delayMs = Math.min(delayMs * 2, 500)) {
      const exited = yield* Deferred.poll(child.exited)
      if (exited._tag === "Some") {
        const how = yield* exited.value
        return yield* Effect.fail(
          `node ${child.plan.id} ${how} before it was ready (see its log above)`,
        )
      }
      if (yield* Effect.promise(() => pingOnce(host, child.plan.clientPort))) return
      if (Date.now() > deadline) {
        return yield* Effect.fail(
          `node ${child.plan.id} did not answer PING on ${host}:${child.plan.clientPort} in time`,
        )
      }
      yield* Effect.sleep(delayMs)
    }
  })

/**
 * Chord routing: wait until the ring is whole, i.e. walking first successors from node 0 visits
 * every node once and comes back (nodes join one by one as their seeds answer).
 */
const waitChordRing = (
  children: ReadonlyArray<Child>,
  host: string,
  deadline: number,
): Effect.Effect<void, string> =>
  Effect.gen(function* () {
    const first = { host, port: children[0]!.plan.clientPort }
    const bar = Progress.start("Chord ring: nodes on the walk by successors", children.length)
    for (;;) {
      const walked = yield* Effect.promise(() => Status.walkChord(first, children.length + 1))
      bar.update(walked.reports.length)
      if (walked.ok && walked.reports.length === children.length) return bar.finish()
      if (Date.now() > deadline) {
        bar.finish()
        return yield* Effect.fail(
          `the Chord ring did not form in time (${walked.reports.length} of ${children.length} nodes on the walk)`,
        )
      }
      yield* Effect.sleep(500)
    }
  })

/** SIGTERM every child still running, SIGKILL those still there after the grace period. */
const stopAll = (children: ReadonlyArray<Child>, graceMs: number): Effect.Effect<void> =>
  Effect.forEach(
    children,
    (child) =>
      Effect.gen(function* () {
        if (yield* Deferred.isDone(child.exited)) return
        child.process.kill("SIGTERM")
        const ended = yield* Deferred.await(child.exited).pipe(
          Effect.timeout(graceMs),
          Effect.option,
        )
        if (ended._tag === "Some") return
        say(`${child.plan.id} did not stop within ${graceMs} ms; sending SIGKILL`)
        child.process.kill("SIGKILL")
        yield* Deferred.await(child.exited).pipe(Effect.timeout(2000), Effect.option)
      }),
    { concurrency: "unbounded", discard: true },
  )

interface Options {
  readonly k: number
  readonly host: string
  readonly baseClientPort: number
  readonly basePeerPort: number
  readonly dataDir: string
  readonly ownDataDir: boolean
  readonly nodeArgs: ReadonlyArray<string>
  readonly readyTimeoutMs: number
  readonly graceMs: number
  readonly routing: "ring" | "chord"
}

/** Under Chord routing every node knows only a few seeds: the first three nodes. */
const CHORD_SEEDS = 3

const plans = (o: Options): ReadonlyArray<Plan> => {
  const ids = Array.from({ length: o.k }, (_, i) => `n${i}`)
  const listed = o.routing === "chord" ? ids.slice(0, CHORD_SEEDS) : ids
  const peers = listed.map((id, i) => `${id}@${o.host}:${o.basePeerPort + i}`).join(",")
  return ids.map((id, i) => {
    const dataDir = join(o.dataDir, id)
    return {
      id,
      clientPort: o.baseClientPort + i,
      peerPort: o.basePeerPort + i,
      dataDir,
      args: [
        "--id",
        id,
        "--host",
        o.host,
        "--client-port",
        String(o.baseClientPort + i),
        "--peer-port",
        String(o.basePeerPort + i),
        "--peers",
        peers,
        "--data-dir",
        dataDir,
        ...o.nodeArgs,
      ],
    }
  })
}

const runCluster = (o: Options): Effect.Effect<number> =>
  Effect.scoped(
    Effect.gen(function* () {
      // Ctrl-C may arrive twice (the terminal, then npx/tsx relaying it): never die half-way.
      yield* holdSignals
      const all = plans(o)
      const width = Math.max(...all.map((p) => p.id.length))
      say(`starting ${o.k} nodes (data in ${o.dataDir}) …`)
      for (const plan of all) mkdirSync(plan.dataDir, { recursive: true })
      const children = yield* Effect.acquireRelease(
        Effect.forEach(all, (plan, i) => spawnChild(plan, i, width)),
        (children) => stopAll(children, o.graceMs),
      )
      const stopping = { value: false }
      const deadline = Date.now() + o.readyTimeoutMs
      const ready = yield* Effect.either(
        Effect.raceFirst(
          Effect.forEach(children, (c) => waitReady(c, o.host, deadline), {
            concurrency: "unbounded",
            discard: true,
          }),
          Effect.flatMap(awaitSignal, (signal) => Effect.fail(`interrupted by ${signal}`)),
        ),
      )
      if (Either.isLeft(ready)) {
        stopping.value = true
        say(`cluster did not start: ${ready.left}; stopping the nodes`)
        return 1
      }
      if (o.routing === "chord") {
        const joined = yield* Effect.either(
          Effect.raceFirst(
            waitChordRing(children, o.host, Date.now() + o.readyTimeoutMs),
            Effect.flatMap(awaitSignal, (signal) => Effect.fail(`interrupted by ${signal}`)),
          ),
        )
        if (Either.isLeft(joined)) {
          stopping.value = true
          say(`cluster did not start: ${joined.left}; stopping the nodes`)
          return 1
        }
      }
      // Report a node that dies on its own; keep the others running.
      const alive = new Set(children)
      const allGone = yield* Deferred.make<void>()
      for (const child of children) {
        child.process.once("exit", (code, signal) => {
          alive.delete(child)
          if (!stopping.value) {
            say(
              `!! node ${child.plan.id} (pid ${child.process.pid}) ${exitText(code, signal)}; ` +
                `${alive.size} of ${children.length} nodes still running`,
            )
          }
          if (alive.size === 0) Deferred.unsafeDone(allGone, Effect.void)
        })
      }
      say("")
      say(
        table(
          ["node", "pid", "client", "peer", "data dir"],
          children.map((c) => [
            c.plan.id,
            String(c.process.pid ?? "?"),
            `${o.host}:${c.plan.clientPort}`,
            `${o.host}:${c.plan.peerPort}`,
            c.plan.dataDir,
          ]),
        ),
      )
      say("")
      say(
        `cluster ready. Connect with: redis-cli -p ${o.baseClientPort}   (any node serves any key)`,
      )
      say(
        `  e.g. redis-cli -p ${o.baseClientPort} SET greeting hello; redis-cli -p ${o.baseClientPort + o.k - 1} GET greeting`,
      )
      say("Press Ctrl-C to stop the cluster.")
      say("")
      const ended = yield* Effect.raceFirst(
        awaitSignal,
        Effect.as(Deferred.await(allGone), "all nodes exited" as const),
      )
      stopping.value = true
      say(
        ended === "all nodes exited"
          ? "every node has exited"
          : `${ended}: stopping ${alive.size} nodes …`,
      )
      return ended === "all nodes exited" ? 1 : 0
    }),
  ).pipe(
    Effect.tap(() =>
      Effect.sync(() => {
        if (o.ownDataDir) rmSync(o.dataDir, { recursive: true, force: true })
        say(o.ownDataDir ? "stopped; temporary data removed" : `stopped; data kept in ${o.dataDir}`)
      }),
    ),
  )

const run = async (parsed: Args.Parsed): Promise<number> => {
  const v = parsed.values
  if (parsed.positional.length > 0) {
    return Args.usageError(spec, `unexpected argument "${parsed.positional[0]}"`)
  }
  const k = Args.num(v, "nodes") ?? 3
  if (k < 1 || k > 100) return Args.usageError(spec, `--nodes must be from 1 to 100, got ${k}`)
  const baseClientPort = Args.num(v, "base-client-port") ?? 7001
  const basePeerPort = Args.num(v, "base-peer-port") ?? 8001
  for (const [name, base] of [
    ["base-client-port", baseClientPort],
    ["base-peer-port", basePeerPort],
  ] as const) {
    if (base < 1 || base + k - 1 > 65535)
      return Args.usageError(spec, `--${name} ${base} leaves no room for ${k} nodes`)
  }
  const clientPorts = [baseClientPort, baseClientPort + k - 1]
  if (basePeerPort <= clientPorts[1]! && basePeerPort + k - 1 >= clientPorts[0]!) {
    return Args.usageError(spec, "client and peer port ranges overlap")
  }
  const replication = Flags.replicationOf(spec, v, k)
  if (typeof replication === "number") return replication
  const { n, r, w } = replication
  const routing = Args.str(v, "routing") ?? "ring"
  if (routing !== "ring" && routing !== "chord") {
    return Args.usageError(spec, `--routing must be ring or chord, got "${routing}"`)
  }
  const nodeArgs = ["--n", String(n), "--r", String(r), "--w", String(w), ...Flags.passOn(v)]
  const given = Args.str(v, "data-dir")
  const dataDir = given === undefined ? mkdtempSync(join(tmpdir(), "dht-cluster-")) : resolve(given)
  return Effect.runPromise(
    runCluster({
      k,
      host: Args.str(v, "host") ?? "127.0.0.1",
      baseClientPort,
      basePeerPort,
      dataDir,
      ownDataDir: given === undefined,
      nodeArgs,
      // Many node processes start slowly on a small host (each compiles its TypeScript).
      readyTimeoutMs: Args.num(v, "ready-timeout-ms") ?? Math.max(30_000, 3000 * k),
      graceMs: Args.num(v, "stop-grace-ms") ?? 5000,
      routing,
    }),
  )
}

export const command: Args.Subcommand = {
  spec,
  run: (argv) => Args.withParsed(spec, argv, run),
}
