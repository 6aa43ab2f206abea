/**
 * End to end, membership with real processes and the lmdb store: a 3-node cluster holding
 * KEYS keys (10,000 by default; DHT_E2E_KEYS overrides) → a 4th node joins as its own process
 * (`dht node --join …`) while ~500 keys are overwritten → every member sees it up and every
 * member's streaming settled → ownership has moved to it → an original node leaves (DHT.LEAVE)
 * and its process exits once removed → every key reads back its latest value through the
 * remaining nodes → one node is killed with SIGKILL and restarted on the same data directory
 * with the same id → every key acknowledged before the kill reads back through it, and its
 * local store lost nothing.
 *
 * Progress is observed through DHT.STATUS (decoded with the CLI's own decoder), by bounded
 * polls, never by sleeps. Every process is killed in `after`, which runs even when a test fails.
 */
import assert from "node:assert/strict"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { after, before, describe, test } from "./helpers/test.ts"
import { Either } from "effect"
import type { Redis } from "ioredis"
import { parseStatus, type StatusReport } from "../impl/cli/status.ts"
import { Cluster, connectClient, freePorts, pollUntil, stopAll } from "./helpers/cluster.ts"

const mainScript = fileURLToPath(new URL("../impl/cli/main.ts", import.meta.url))

/** Run the dht command as a user would; its exit code and output. */
const dht = (
  ...args: ReadonlyArray<string>
): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", mainScript, ...args],
      { timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
        resolve({ code, stdout, stderr })
      },
    )
  })

const KEYS = Number(process.env.DHT_E2E_KEYS ?? 10_000)
const OVERWRITES = Math.min(500, Math.floor(KEYS / 20))
const POST_KILL_KEYS = 500
const BATCH = 500

const clients: Array<Redis> = []

const connect = (port: number): Redis => connectClient(port, clients, 15_000)

const key = (i: number): string => `member:key:${i}`

const status = async (client: Redis): Promise<StatusReport> => {
  const decoded = parseStatus(await client.call("DHT.STATUS"))
  if (Either.isLeft(decoded)) throw new Error(decoded.left)
  return decoded.right
}

/** SET every pair with pipelines of BATCH; every reply must be OK. */
const writeAll = async (
  client: Redis,
  pairs: ReadonlyArray<readonly [string, string]>,
): Promise<void> => {
  for (let i = 0; i < pairs.length; i += BATCH) {
    const pipeline = client.pipeline()
    for (const [k, v] of pairs.slice(i, i + BATCH)) pipeline.set(k, v)
    const replies = (await pipeline.exec()) ?? []
    // A write that misses its quorum (a busy joiner must ack on top of W) is indeterminate:
    // retry it, as a client would, so that the value checked later is deterministic.
    for (const [j, [error, ok]] of replies.entries()) {
      if (error === null && ok === "OK") continue
      const [k, v] = pairs[i + j]!
      let done = false
      for (let attempt = 0; attempt < 5 && !done; attempt++) {
        done = (await client.set(k, v).catch(() => null)) === "OK"
      }
      assert.ok(done, `SET ${k} failed five times: ${String(error ?? ok)}`)
    }
  }
}

/** GET every key of `expected` with pipelines; the keys whose value differs (at most 5 shown). */
const mismatches = async (
  client: Redis,
  expected: ReadonlyMap<string, string>,
): Promise<{ count: number; shown: Array<string> }> => {
  const keys = [...expected.keys()]
  let count = 0
  const shown: Array<string> = []
  for (let i = 0; i < keys.length; i += BATCH) {
    const pipeline = client.pipeline()
    const part = keys.slice(i, i + BATCH)
    for (const k of part) pipeline.get(k)
    const replies = (await pipeline.exec()) ?? []
    part.forEach((k, j) => {
      const [error, value] = replies[j] ?? [new Error("no reply"), null]
      if (error === null && value === expected.get(k)) return
      count++
      if (shown.length < 5) shown.push(`${k}: ${error?.message ?? JSON.stringify(value)}`)
    })
  }
  return { count, shown }
}

const assertAllReadable = async (
  client: Redis,
  expected: ReadonlyMap<string, string>,
  via: string,
): Promise<void> => {
  const { count, shown } = await mismatches(client, expected)
  assert.equal(
    count,
    0,
    `${count} of ${expected.size} keys read through ${via} lack their latest value: ${shown.join("; ")}`,
  )
}

describe("e2e: join, leave and SIGKILL of real lmdb nodes keep every acknowledged key", {
  timeout: 170_000,
}, () => {
  let cluster: Cluster | undefined

  before(async () => {
    cluster = await Cluster.start({ nodes: 3, store: "lmdb", n: 3, r: 2, w: 2 })
  })

  after(async () => {
    for (const client of clients) client.disconnect()
    await stopAll([cluster])
  })

  test(`REBAL-1: ${KEYS} keys survive a join, a leave and a SIGKILL + restart`, async (t) => {
    const c = cluster!
    const expected = new Map<string, string>()
    const initial = Array.from({ length: KEYS }, (_, i) => [key(i), `v1:${key(i)}`] as const)
    const writers = c.nodes.map((node) => connect(node.clientPort))
    // Spread the writes over the three coordinators.
    await Promise.all(
      writers.map((w, j) =>
        writeAll(
          w,
          initial.filter((_, i) => i % writers.length === j),
        ),
      ),
    )
    for (const [k, v] of initial) expected.set(k, v)

    // --- a fourth node joins, as its own process, while keys are overwritten -------------------
    const overwrites = Array.from(
      { length: OVERWRITES },
      (_, i) => [key(i * 20), `v2:${key(i * 20)}`] as const,
    )
    const observer = connect(c.nodes[0]!.clientPort)
    let duringJoin = 0
    const overwriting = (async () => {
      const slices = 10
      const size = Math.ceil(overwrites.length / slices)
      for (let s = 0; s < slices; s++) {
        await writeAll(writers[s % writers.length]!, overwrites.slice(s * size, (s + 1) * size))
        const view = await status(observer)
        if (view.members.some((m) => m.id === "n3" && m.status === "joining")) duringJoin++
        await new Promise((resolve) => setTimeout(resolve, 300))
      }
    })()
    const joined = await c.join()
    await overwriting
    for (const [k, v] of overwrites) expected.set(k, v)
    t.diagnostic(`${duringJoin} of 10 overwrite batches landed while n3 was joining`)
    const joiner = c.nodes[joined]!
    assert.equal(joiner.id, "n3")
    const reports = async (ids: ReadonlyArray<string>) =>
      Promise.all(
        c.nodes.filter((n) => ids.includes(n.id)).map((n) => status(connect(n.clientPort))),
      )
    const settledWith = async (ids: ReadonlyArray<string>, check: (r: StatusReport) => boolean) => {
      const all = await reports(ids)
      return all.every((r) => r.streaming.settled && r.streaming.pending === 0 && check(r))
    }
    await pollUntil(
      "every member to see n3 up, with streaming settled everywhere",
      () =>
        settledWith(["n0", "n1", "n2", "n3"], (r) =>
          r.members.some((m) => m.id === "n3" && m.status === "up"),
        ),
      { timeoutMs: 60_000 },
    )
    const afterJoin = await status(observer)
    const n3 = afterJoin.members.find((m) => m.id === "n3")!
    assert.ok(n3.owned > 0.1, `n3 owns ${n3.owned} of the ring after joining`)
    assert.equal(n3.tokens, 256)
    const n3Own = await status(connect(joiner.clientPort))
    assert.ok(n3Own.keys > 0, "n3 holds no keys after joining")
    t.diagnostic(
      `after the join n3 owns ${(n3.owned * 100).toFixed(1)}% and holds ${n3Own.keys} keys; ` +
        `ownership ${afterJoin.members.map((m) => `${m.id}=${(m.owned * 100).toFixed(1)}%`).join(" ")}`,
    )
    await assertAllReadable(connect(joiner.clientPort), expected, "n3 after its join")

    // --- an original node leaves ---------------------------------------------------------------
    const leaver = c.nodes[1]!
    const reply = (await connect(leaver.clientPort).call("DHT.LEAVE")) as string
    assert.match(reply, /^leaving/)
    await pollUntil(
      "n0, n2 and n3 to see n1 removed",
      async () =>
        (await reports(["n0", "n2", "n3"])).every(
          (r) => r.members.find((m) => m.id === "n1")?.status === "removed",
        ),
      { timeoutMs: 60_000 },
    )
    await pollUntil(
      "n1's process to exit once removed",
      () => leaver.process.exitCode !== null || leaver.process.signalCode !== null,
      { timeoutMs: 20_000 },
    )
    await pollUntil(
      "streaming to settle on n0, n2 and n3 after the leave",
      () => settledWith(["n0", "n2", "n3"], () => true),
      { timeoutMs: 60_000 },
    )
    await assertAllReadable(connect(c.nodes[0]!.clientPort), expected, "n0 after n1 left")
    await assertAllReadable(connect(joiner.clientPort), expected, "n3 after n1 left")

    // --- SIGKILL and restart on the same data directory ----------------------------------------
    const victim = c.nodes[2]!
    const post = Array.from(
      { length: POST_KILL_KEYS },
      (_, i) => [`member:post:${i}`, `v3:member:post:${i}`] as const,
    )
    await writeAll(connect(victim.clientPort), post)
    for (const [k, v] of post) expected.set(k, v)
    const localBefore = (await status(connect(victim.clientPort))).keys
    await c.kill(2, "SIGKILL")
    await c.restart(2)
    const back = connect(victim.clientPort)
    const localAfter = (await status(back)).keys
    assert.ok(
      localAfter >= localBefore,
      `n2 held ${localBefore} keys before SIGKILL and ${localAfter} after restart`,
    )
    await pollUntil(
      "the restarted n2 to see n1 removed and n0, n3 up",
      async () => {
        const r = await status(back)
        const of = (id: string) => r.members.find((m) => m.id === id)
        return (
          of("n1")?.status === "removed" &&
          of("n0")?.status === "up" &&
          of("n3")?.status === "up" &&
          of("n0")?.reachable === true &&
          of("n3")?.reachable === true
        )
      },
      { timeoutMs: 30_000 },
    )
    await assertAllReadable(back, expected, "n2 after SIGKILL and restart")
  })

  test("e2e: dht status, ring, leave and remove against the remaining three nodes", async () => {
    const c = cluster!
    const port = String(c.nodes[0]!.clientPort)
    const [status, ring, leave, remove, unknown, [dead]] = await Promise.all([
      dht("status", "--port", port),
      dht("ring", "--port", port),
      dht("leave", "--port", port),
      dht("remove", "n2", "--port", port),
      dht("remove", "n9", "--port", port),
      freePorts(1),
    ])
    assert.equal(status.code, 0, status.stderr)
    for (const id of ["n0", "n2", "n3"]) {
      assert.match(status.stdout, new RegExp(`^UN  ${id}\\*?\\s+up, reachable`, "m"))
    }
    assert.match(status.stdout, /^removed: n1$/m)
    assert.match(status.stdout, /^streaming: settled on every member that answered/m)
    assert.equal(ring.code, 0, ring.stderr)
    assert.match(ring.stdout, /ownership: max \d+\.\d%, mean 33\.3%, max\/mean \d\.\d{3}/)
    assert.match(ring.stdout, /^ {2}\|[abc ]{71}\|$/m)
    assert.deepEqual(
      [leave.code, leave.stderr],
      [1, "dht leave: cannot leave: 2 members would remain, fewer than N=3\n"],
    )
    assert.deepEqual(
      [remove.code, remove.stderr],
      [1, "dht remove: cannot remove n2: 2 members would remain, fewer than N=3\n"],
    )
    assert.deepEqual([unknown.code, unknown.stderr], [1, "dht remove: no member n9\n"])
    const nobody = await dht("status", "--port", String(dead))
    assert.equal(nobody.code, 1)
    assert.match(
      nobody.stderr,
      /^dht status: no node answers at 127\.0\.0\.1:\d+ \(connect ECONNREFUSED/,
    )
  })
})
