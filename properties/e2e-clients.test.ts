/**
 * Any Redis client, unchanged: one scenario list run by ioredis and by node-redis v5 (its
 * default, `RESP: 2` and `RESP: 3`) against a real 3-node cluster. Every scenario compares what
 * the client library returns with what Redis returns for the same commands, pipelines included
 * (CONN-1), and the HELLO handshake node-redis makes for RESP3 (RESP-9).
 *
 * redis-py is not run here: this machine reaches no Python package index, and Debian's
 * python3-redis predates RESP3 (docs/clients.md says what was checked by hand).
 */
import assert from "node:assert/strict"
import { after, before, describe, test } from "./helpers/test.ts"
import { Redis } from "ioredis"
import { createClient } from "redis"
import { Cluster, stopAll } from "./helpers/cluster.ts"

/** The commands every scenario needs, as each library spells them. */
interface Client {
  readonly name: string
  set(key: string, value: string): Promise<unknown>
  get(key: string): Promise<string | null>
  del(...keys: Array<string>): Promise<number>
  exists(...keys: Array<string>): Promise<number>
  mset(pairs: Record<string, string>): Promise<unknown>
  mget(keys: Array<string>): Promise<Array<string | null>>
  /** SET k v and GET k sent as one pipeline (node-redis: Promise.all; ioredis: pipeline()). */
  setThenGet(key: string, value: string): Promise<[unknown, string | null]>
  raw(args: Array<string>): Promise<unknown>
  close(): Promise<void>
}

const ioredisClient = async (port: number): Promise<Client> => {
  const c = new Redis({
    host: "127.0.0.1",
    port,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  c.on("error", () => {})
  return {
    name: "ioredis",
    set: (k, v) => c.set(k, v),
    get: (k) => c.get(k),
    del: (...ks) => c.del(...ks),
    exists: (...ks) => c.exists(...ks),
    mset: (pairs) => c.mset(pairs),
    mget: (ks) => c.mget(...ks),
    setThenGet: async (k, v) => {
      const results = (await c.pipeline().set(k, v).get(k).exec())!
      return [results[0]![1], results[1]![1] as string | null]
    },
    raw: (args) => c.call(args[0]!, ...args.slice(1)),
    close: async () => {
      c.disconnect()
    },
  }
}

const nodeRedisClient = async (port: number, resp: 2 | 3 | undefined): Promise<Client> => {
  const c = createClient({
    socket: { host: "127.0.0.1", port, reconnectStrategy: false },
    ...(resp === undefined ? {} : { RESP: resp }),
  })
  c.on("error", () => {})
  await c.connect()
  return {
    name: `node-redis${resp === undefined ? " (default)" : ` RESP${resp}`}`,
    set: (k, v) => c.set(k, v),
    get: async (k) => (await c.get(k)) as string | null,
    del: (...ks) => c.del(ks),
    exists: (...ks) => c.exists(ks),
    mset: (pairs) => c.mSet(pairs),
    mget: async (ks) => (await c.mGet(ks)) as Array<string | null>,
    setThenGet: async (k, v) => {
      const [set, got] = await Promise.all([c.set(k, v), c.get(k)])
      return [set, got as string | null]
    },
    raw: (args) => c.sendCommand(args),
    close: async () => {
      c.destroy()
    },
  }
}

/** A scenario: commands and the answers Redis gives them. */
type Scenario = readonly [string, (c: Client, prefix: string) => Promise<void>]

const scenarios: ReadonlyArray<Scenario> = [
  [
    "SET then GET, and GET of a missing key",
    async (c, p) => {
      assert.equal(await c.set(`${p}a`, "1"), "OK")
      assert.equal(await c.get(`${p}a`), "1")
      assert.equal(await c.get(`${p}missing`), null)
    },
  ],
  [
    "pipelined SET and GET of the same key read the write (CONN-1), 50 times",
    async (c, p) => {
      for (let i = 0; i < 50; i++) {
        const [set, got] = await c.setThenGet(`${p}pipe${i}`, `v${i}`)
        assert.equal(set, "OK")
        assert.equal(got, `v${i}`, `pipeline ${i}`)
      }
    },
  ],
  [
    "MSET, MGET with a missing key, EXISTS counts, DEL counts",
    async (c, p) => {
      assert.equal(await c.mset({ [`${p}x`]: "1", [`${p}y`]: "2" }), "OK")
      assert.deepEqual(await c.mget([`${p}x`, `${p}nope`, `${p}y`]), ["1", null, "2"])
      assert.equal(await c.exists(`${p}x`, `${p}y`, `${p}nope`), 2)
      assert.equal(await c.del(`${p}x`, `${p}nope`), 1)
      assert.equal(await c.get(`${p}x`), null)
    },
  ],
  [
    "binary-safe values survive",
    async (c, p) => {
      const value = "tab\there, newline\nthere, ünïcödé"
      await c.set(`${p}bin`, value)
      assert.equal(await c.get(`${p}bin`), value)
    },
  ],
  [
    "PING, ECHO, SELECT 0, CLIENT SETNAME/GETNAME, INFO server",
    async (c) => {
      assert.equal(await c.raw(["PING"]), "PONG")
      assert.equal(await c.raw(["ECHO", "hi"]), "hi")
      assert.equal(await c.raw(["SELECT", "0"]), "OK")
      assert.equal(await c.raw(["CLIENT", "SETNAME", "compat"]), "OK")
      assert.equal(await c.raw(["CLIENT", "GETNAME"]), "compat")
      assert.match(String(await c.raw(["INFO", "server"])), /redis_version:7\./)
    },
  ],
  [
    "DHT.GET answers context, deleted and siblings (a map in RESP3, a flat array in RESP2)",
    async (c, p) => {
      await c.set(`${p}causal`, "v")
      const reply = await c.raw(["DHT.GET", `${p}causal`])
      const fields: Record<string, unknown> = Array.isArray(reply)
        ? Object.fromEntries(
            Array.from({ length: reply.length / 2 }, (_, i) => [
              String(reply[2 * i]),
              reply[2 * i + 1],
            ]),
          )
        : reply instanceof Map
          ? Object.fromEntries(reply)
          : (reply as Record<string, unknown>)
      assert.deepEqual(Object.keys(fields).sort(), ["context", "deleted", "siblings"])
      assert.equal(Number(fields.deleted), 0)
      assert.deepEqual(fields.siblings, ["v"])
      assert.equal(typeof fields.context, "string")
    },
  ],
  [
    "SET … EX, TTL, PERSIST; SET NX and GET; expiry reads nil",
    async (c, p) => {
      assert.equal(await c.raw(["SET", `${p}t`, "v", "EX", "100"]), "OK")
      const ttl = Number(await c.raw(["TTL", `${p}t`]))
      assert.ok(ttl > 90 && ttl <= 100, `TTL ${ttl}`)
      assert.equal(Number(await c.raw(["PERSIST", `${p}t`])), 1)
      assert.equal(Number(await c.raw(["TTL", `${p}t`])), -1)
      assert.equal(await c.raw(["SET", `${p}t`, "w", "NX"]), null)
      assert.equal(await c.raw(["SET", `${p}t`, "w", "GET"]), "v")
      assert.equal(await c.raw(["SET", `${p}short`, "v", "PX", "30"]), "OK")
      await new Promise((resolve) => setTimeout(resolve, 60))
      assert.equal(await c.get(`${p}short`), null)
      assert.equal(Number(await c.raw(["TTL", `${p}short`])), -2)
    },
  ],
  [
    "INCR, INCRBY, DECR on a counter; INCR of a non-number fails like Redis",
    async (c, p) => {
      assert.equal(Number(await c.raw(["INCR", `${p}n`])), 1)
      assert.equal(Number(await c.raw(["INCRBY", `${p}n`, "41"])), 42)
      assert.equal(Number(await c.raw(["DECR", `${p}n`])), 41)
      assert.equal(await c.get(`${p}n`), "41")
      await c.set(`${p}s`, "abc")
      await assert.rejects(c.raw(["INCR", `${p}s`]), /ERR value is not an integer or out of range/)
    },
  ],
  [
    "SCAN with MATCH walks the keys of this scenario",
    async (c, p) => {
      await c.mset({ [`${p}scan1`]: "1", [`${p}scan2`]: "2" })
      const found: Array<string> = []
      let cursor = "0"
      for (let i = 0; i < 10_000; i++) {
        const [next, keys] = (await c.raw([
          "SCAN",
          cursor,
          "MATCH",
          `${p}scan*`,
          "COUNT",
          "1000",
        ])) as [string, Array<string>]
        found.push(...keys)
        cursor = String(next)
        if (cursor === "0") break
      }
      assert.deepEqual(found.sort(), [`${p}scan1`, `${p}scan2`])
    },
  ],
  [
    "errors read like Redis's",
    async (c) => {
      await assert.rejects(c.raw(["NOSUCHCOMMAND"]), /ERR unknown command 'NOSUCHCOMMAND'/)
      await assert.rejects(c.raw(["GET"]), /ERR wrong number of arguments for 'get' command/)
      await assert.rejects(c.raw(["HELLO", "4"]), /NOPROTO/)
    },
  ],
]

describe("e2e clients: the same scenarios through ioredis and node-redis v5 (default, RESP2, RESP3)", {
  timeout: 180_000,
}, () => {
  let cluster: Cluster | undefined
  before(async () => {
    cluster = await Cluster.start({ nodes: 3, store: "lmdb", n: 3, r: 2, w: 2 })
  })
  after(async () => {
    await stopAll([cluster])
  })

  const makers: ReadonlyArray<readonly [string, (port: number) => Promise<Client>]> = [
    ["ioredis", ioredisClient],
    ["node-redis (default)", (port) => nodeRedisClient(port, undefined)],
    ["node-redis RESP2", (port) => nodeRedisClient(port, 2)],
    ["node-redis RESP3", (port) => nodeRedisClient(port, 3)],
  ]

  for (const [name, make] of makers) {
    test(`CONN-1, RESP-9: ${name} runs every scenario with Redis's answers, through every node`, async () => {
      let ran = 0
      for (const [i, node] of cluster!.nodes.entries()) {
        const client = await make(node.clientPort)
        try {
          for (const [what, run] of scenarios) {
            const prefix = `compat:${name}:${i}:${ran}:`
            await run(client, prefix).catch((e: Error) => {
              throw new Error(`${name} at n${i}: ${what}: ${e.message}`)
            })
            ran++
          }
        } finally {
          await client.close()
        }
      }
      assert.equal(ran, scenarios.length * cluster!.nodes.length)
    })
  }

  test("RESP-9: HELLO 3 answers the server map, names the connection, and accepts only the default user in AUTH", async () => {
    const c = await nodeRedisClient(cluster!.nodes[0]!.clientPort, 3)
    try {
      const hello = (await c.raw(["HELLO", "3", "SETNAME", "h"])) as Record<string, unknown>
      assert.equal(hello.server, "redis")
      assert.equal(hello.proto, 3)
      assert.equal(hello.mode, "standalone")
      assert.equal(hello.role, "master")
      assert.deepEqual(hello.modules, [])
      assert.equal(await c.raw(["CLIENT", "GETNAME"]), "h")
      await assert.rejects(c.raw(["HELLO", "3", "AUTH", "someone", "pw"]), /WRONGPASS/)
      assert.equal(
        ((await c.raw(["HELLO", "3", "AUTH", "default", "pw"])) as { proto: number }).proto,
        3,
      )
    } finally {
      await c.close()
    }
  })
})
