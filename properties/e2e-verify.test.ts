/**
 * `dht verify` end to end (KV-9): real node processes under a real nemesis, a recorded history
 * and the history checker (spec/history.ts).
 *
 * 1. A short run of 5 nodes under kill -9 (one, several or all nodes), SIGSTOP pauses,
 *    partitions when root (each node in its own network namespace) and the forward-pause
 *    schedule (a key's first replica paused while a write of the key is forwarded to it) must
 *    pass: exit 0, no lost write, enough acknowledged writes and reads to mean something, and at
 *    least one fault of each kind injected.
 * 2. The negative control: the same forward-pause schedule with --unsafe-failover (the nodes run
 *    the old failover, which lets the paused replica run its stale copy of the write once it
 *    resumes) must exit non-zero with lost writes, among them a probe key's second write.
 * 3. CONN-1 in CP mode: a run under kill -9, pauses and partitions (when root) must pass with
 *    the pipeliner's reads checked (`SET k v; GET k` in one pipeline on one connection: the GET
 *    reads v), every client reading its own writes (CAUSAL-4) and no read returning a value an
 *    acknowledged causal write or delete superseded (CAUSAL-3), each judged on enough reads;
 *    and the negative control, --unsafe-unordered (the nodes' RESP servers submit
 *    every command on arrival instead of after the same connection's earlier commands on the
 *    key), must exit non-zero with read-your-writes violations on pipelined reads.
 *
 * `dht verify` stops every node it started on success, failure and Ctrl-C; if a run outlives its
 * bound, the test interrupts it twice (its abort path kills the nodes and removes the
 * namespaces), then kills it.
 */
import assert from "node:assert/strict"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { after, test } from "./helpers/test.ts"
import { fileURLToPath } from "node:url"
import { tempDir, stopAll } from "./helpers/cluster.ts"

const repoRoot = fileURLToPath(new URL("../", import.meta.url))
const mainScript = join(repoRoot, "impl", "cli", "main.ts")

/** Network namespaces (and so partitions) need root and iproute2. */
const canPartition = ((): boolean => {
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return false
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()

const running = new Set<ChildProcess>()

after(async () => {
  for (const child of running) child.kill("SIGKILL")
  await stopAll([])
})

interface Run {
  readonly code: number | null
  readonly output: string
  readonly summary: Summary
}

interface Summary {
  readonly ok: boolean
  readonly network: string
  readonly unsafeFailover: boolean
  readonly unsafeUnordered?: boolean
  readonly converged: boolean
  readonly counts: Readonly<Record<string, number>>
  readonly checks: Readonly<
    Record<
      string,
      {
        checked: number
        found: number
        violated: number
        pipelined?: { checked: number; found: number }
      }
    >
  >
  readonly injected: Readonly<Record<string, number>>
  readonly violations: ReadonlyArray<{ check: string; key: string; message: string }>
}

/** Run `dht verify` with `args`, within `boundMs`; read its summary.json. */
const verify = (args: ReadonlyArray<string>, boundMs: number): Promise<Run> => {
  const out = tempDir("dht-e2e-verify-")
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", mainScript, "verify", ...args, "--out", out],
      { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] },
    )
    running.add(child)
    let output = ""
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8")
    })
    child.stderr?.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8")
    })
    const timer = setTimeout(() => {
      child.kill("SIGINT")
      setTimeout(() => child.kill("SIGINT"), 500)
      setTimeout(() => child.kill("SIGKILL"), 15_000)
    }, boundMs)
    child.on("exit", (code) => {
      clearTimeout(timer)
      running.delete(child)
      try {
        const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8")) as Summary
        resolve({ code, output, summary })
      } catch (e) {
        reject(new Error(`dht verify left no summary (exit ${code}): ${String(e)}\n${output}`))
      }
    })
  })
}

const tail = (text: string): string => text.split("\n").slice(-60).join("\n")

/**
 * What the CP run's session, superseded and resurrection checks judged at least (reads), so
 * that CAUSAL-3 and CAUSAL-4 cannot pass by judging nothing (measured with seed 22: 2,931
 * reads judged for their session, 814 for superseded values, 1,711 for resurrections).
 */
const SESSIONS_FLOOR = 1000
const SUPERSEDED_FLOORS = { superseded: 300, resurrection: 500 } as const

test("KV-9, CAUSAL-1, CAUSAL-2, CAUSAL-6: dht verify passes a 5-node cluster under kill -9, pauses, partitions (when root) and the forward-pause schedule", {
  timeout: 150_000,
}, async () => {
  const kinds = canPartition
    ? ["kill", "pause", "partition", "forward-pause"]
    : ["kill", "pause", "forward-pause"]
  const run = await verify(
    [
      ...["--nodes", "5", "--time", "40s", "--seed", "1"],
      ...["--nemesis", kinds.join(","), "--quiesce-timeout-ms", "40000"],
    ],
    120_000,
  )
  const { summary } = run
  assert.equal(run.code, 0, `dht verify failed:\n${tail(run.output)}`)
  assert.match(run.output, /dht verify: PASS — no violation/)
  assert.equal(summary.ok, true)
  assert.equal(summary.network, canPartition ? "netns" : "loopback")
  assert.equal(summary.unsafeFailover, false)
  assert.equal(summary.converged, true, "the final reads agreed")
  for (const name of ["lost", "fromNowhere", "diverged"])
    assert.equal(summary.counts[name], 0, name)
  // Enough happened for the checks to mean something.
  assert.ok(summary.counts.acknowledged! > 500, `acknowledged ${summary.counts.acknowledged}`)
  assert.ok(summary.counts.reads! > 500, `reads ${summary.counts.reads}`)
  assert.ok(summary.checks.lost!.checked > 500, `writes checked ${summary.checks.lost!.checked}`)
  assert.ok(summary.checks.convergence!.checked >= 15, "keys read at every node")
  for (const kind of kinds) {
    assert.ok((summary.injected[kind] ?? 0) >= 1, `no ${kind} fault was injected`)
  }
})

test("KV-9: negative control: dht verify --unsafe-failover under the forward-pause schedule exits non-zero and reports the lost writes", {
  timeout: 120_000,
}, async () => {
  const run = await verify(
    [
      ...["--nodes", "5", "--time", "25s", "--seed", "2", "--clients", "4"],
      ...["--nemesis", "forward-pause", "--unsafe-failover", "--quiesce-timeout-ms", "30000"],
    ],
    90_000,
  )
  const { summary } = run
  assert.equal(run.code, 1, `expected exit 1:\n${tail(run.output)}`)
  assert.match(run.output, /dht verify: FAIL — lost \d+/)
  assert.equal(summary.ok, false)
  assert.equal(summary.unsafeFailover, true)
  assert.ok((summary.injected["forward-pause"] ?? 0) >= 1, "the schedule ran")
  assert.ok(summary.counts.lost! > 0, `lost ${summary.counts.lost}`)
  assert.equal(summary.checks.lost!.violated, summary.counts.lost)
  const lost = summary.violations.filter((v) => v.check === "lost")
  assert.ok(
    lost.some((v) => v.key.startsWith("probe:")),
    "a probe key (the forward-pause schedule) lost its second write",
  )
  for (const v of lost) {
    // Plain SETs are what a stale copy supersedes: the probe keys, and the owners' keys the
    // workload was writing through the paused replica at the time.
    assert.match(v.key, /^(probe:|own:)/)
    assert.match(v.message, /^lost write: #\d+ write "(probe|owner\d+)\.\d+" by (probe|owner\d+)/)
  }
})

test("CONN-1, KV-9, CAUSAL-3, CAUSAL-4: dht verify in CP mode passes with the pipeliner's reads checked (a GET pipelined after a SET of the key on one connection reads it), every session reading its own writes, and no superseded or deleted value read back, under kill -9, pauses and partitions (when root)", {
  timeout: 120_000,
}, async () => {
  const kinds = canPartition ? ["kill", "pause", "partition"] : ["kill", "pause"]
  const run = await verify(
    [
      ...["--nodes", "5", "--time", "30s", "--seed", "22", "--mode", "cp"],
      ...["--nemesis", kinds.join(","), "--quiesce-timeout-ms", "30000"],
    ],
    100_000,
  )
  const { summary } = run
  assert.equal(run.code, 0, `dht verify failed:\n${tail(run.output)}`)
  assert.match(run.output, /dht verify: PASS — no violation/)
  assert.match(run.output, /pipelined reads checked [\d,]+ .*, stale 0/)
  assert.equal(summary.ok, true)
  assert.equal(summary.unsafeUnordered, false)
  const sessions = summary.checks.sessions!
  assert.equal(sessions.violated, 0)
  assert.ok(
    (sessions.pipelined?.checked ?? 0) >= 50,
    `pipelined reads checked ${sessions.pipelined?.checked}`,
  )
  assert.equal(sessions.pipelined?.found, 0)
  for (const name of ["lost", "fromNowhere", "diverged", "stale"])
    assert.equal(summary.counts[name], 0, name)
  // CAUSAL-4: strict quorums promise read-your-writes, so the sessions check judged every read
  // against its client's own last acknowledged update (and monotonic reads) and found none
  // stale. CAUSAL-3: no read that began after an acknowledged causal write or delete returned
  // a value it superseded (or a value written before an acknowledged delete), nor did any
  // final read.
  console.log(`# CP run: ${JSON.stringify({ counts: summary.counts, checks: summary.checks })}`)
  assert.ok(
    sessions.checked >= SESSIONS_FLOOR,
    `reads judged for their session ${sessions.checked}`,
  )
  assert.equal(sessions.found, 0)
  for (const name of ["superseded", "resurrection"] as const) {
    const c = summary.checks[name]!
    assert.equal(c.found, 0, `${name}: ${c.found}`)
    assert.ok(c.checked >= SUPERSEDED_FLOORS[name], `${name} judged ${c.checked} reads`)
  }
})

test("CONN-1: negative control: dht verify --unsafe-unordered (commands run on arrival, not in connection order) exits non-zero with read-your-writes violations on pipelined reads", {
  timeout: 100_000,
}, async () => {
  const run = await verify(
    [
      ...["--nodes", "5", "--time", "15s", "--seed", "4", "--mode", "cp"],
      ...["--nemesis", "none", "--unsafe-unordered", "--quiesce-timeout-ms", "20000"],
    ],
    80_000,
  )
  const { summary } = run
  assert.equal(run.code, 1, `expected exit 1:\n${tail(run.output)}`)
  assert.match(run.output, /dht verify: FAIL — sessions \d+/)
  assert.equal(summary.ok, false)
  assert.equal(summary.unsafeUnordered, true)
  const sessions = summary.checks.sessions!
  assert.ok((sessions.pipelined?.found ?? 0) > 0, `pipelined stale ${sessions.pipelined?.found}`)
  assert.equal(sessions.violated, sessions.found)
  const stale = summary.violations.filter((v) => v.check === "sessions")
  assert.ok(stale.length > 0)
  for (const v of stale) {
    // Only the pipeliner sends commands of one key back to back on one connection.
    assert.match(v.key, /^pipe:/)
    assert.match(
      v.message,
      /^stale read \((read-your-writes|monotonic reads)\): #\d+ read by pipeliner\d+ at n\d \(invoked [\d.]+, pipelined after #\d+,/,
    )
  }
  assert.ok(
    stale.some((v) => v.message.startsWith("stale read (read-your-writes)")),
    "a pipelined GET missed the SET or DEL sent just before it",
  )
  // Nothing else is broken: no write lost, no value from nowhere, the nodes agree.
  for (const name of ["lost", "fromNowhere", "diverged"])
    assert.equal(summary.counts[name], 0, name)
})
