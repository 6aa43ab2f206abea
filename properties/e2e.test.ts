/**
 * End to end: real `dht node` processes on loopback, driven through the Redis protocol with
 * ioredis and raw sockets. Checks what a user relies on: any node serves any key, a node killed
 * with SIGKILL does not stop the other two, bad input (RESP or peer frames) costs only the
 * offending connection, errors read like Redis's, pipelined replies keep their order, a request
 * for more replicas than a key has (KV-8) or than are alive (KV-11) is refused, a node's object
 * never regresses whatever a fake peer sends it (KV-10), and an lmdb node reads back exactly
 * what it acknowledged after SIGKILL or a clean stop (DUR-1, DUR-2).
 *
 * Every process is killed in `after`, which node:test runs even when a test fails.
 */
import assert from "node:assert/strict"
import { after, before, describe, test } from "./helpers/test.ts"
import type { Redis } from "ioredis"
import { DhtClient } from "../impl/client/client.ts"
import * as Version from "../impl/core/version.ts"
import * as Context from "../impl/wire/context.ts"
import { encodeFrame } from "../impl/wire/frame.ts"
import { Cluster, connectClient, exchange, pollUntil, resp, stopAll } from "./helpers/cluster.ts"

const clients: Array<Redis> = []

const connect = (port: number): Redis => connectClient(port, clients, 10_000)

const rejects = async (promise: Promise<unknown>, pattern: RegExp): Promise<void> => {
  await assert.rejects(promise, (e: Error) => {
    assert.match(e.message, pattern)
    return true
  })
}

describe("e2e: a 3-node cluster, a 2-node Chord ring with N=3 and a single lmdb node, over real TCP", {
  timeout: 120_000,
}, () => {
  let three: Cluster | undefined
  let pair: Cluster | undefined
  let single: Cluster | undefined

  before(async () => {
    ;[three, pair, single] = await Promise.all([
      Cluster.start({ nodes: 3, store: "lmdb", n: 3, r: 2, w: 2 }),
      Cluster.start({ nodes: 2, store: "memory", routing: "chord", n: 3, r: 2, w: 2 }),
      Cluster.start({ nodes: 1, store: "lmdb", n: 1, r: 1, w: 1 }),
    ])
  })

  after(async () => {
    for (const client of clients) client.disconnect()
    await stopAll([three, pair, single])
  })

  const node = (i: number) => three!.nodes[i]!

  test("KV-2: a value written through one node is read through every other", async () => {
    const writer = connect(node(0).clientPort)
    const keys = Array.from({ length: 20 }, (_, i) => `e2e:key:${i}`)
    for (const key of keys) assert.equal(await writer.set(key, `value of ${key}`), "OK")
    // Byte strings survive exactly, whatever their bytes.
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    assert.equal(await writer.set(Buffer.from("e2e:bytes\xff", "latin1"), bytes), "OK")
    for (const i of [1, 2]) {
      const reader = connect(node(i).clientPort)
      assert.deepEqual(
        await reader.mget(...keys),
        keys.map((k) => `value of ${k}`),
      )
      assert.deepEqual(await reader.getBuffer(Buffer.from("e2e:bytes\xff", "latin1")), bytes)
      assert.equal(await reader.get("e2e:never-written"), null)
    }
    const other = connect(node(2).clientPort)
    assert.equal(await other.exists(keys[0]!, keys[1]!, "e2e:never-written"), 2)
    assert.equal(await other.del(keys[0]!, "e2e:never-written"), 1)
    assert.equal(await connect(node(1).clientPort).get(keys[0]!), null)
  })

  test("unknown commands, wrong arity and bad SET options get Redis-style errors", async () => {
    const client = connect(node(1).clientPort)
    await rejects(
      client.call("FROBNICATE", "a", "b"),
      /^ERR unknown command 'FROBNICATE', with args beginning with: 'a' 'b'/,
    )
    await rejects(client.call("GET"), /^ERR wrong number of arguments for 'get' command$/)
    await rejects(client.call("GET", "a", "b"), /^ERR wrong number of arguments for 'get' command/)
    await rejects(client.call("SET", "k", "v", "EX", "ten"), /^ERR value is not an integer/)
    await rejects(client.call("SET", "k", "v", "EX", "1", "PX", "1"), /^ERR syntax error$/)
    await rejects(client.call("SET", "k", "v", "BOGUS"), /^ERR syntax error$/)
    await rejects(client.call("SELECT", "3"), /^ERR DB index is out of range/)
    assert.equal(await client.ping(), "PONG")
  })

  test("a value over the size limit gets a clear error and the connection stays usable", async () => {
    const client = connect(node(0).clientPort)
    const limit = 1024 * 1024
    await rejects(
      client.set("e2e:big", "x".repeat(limit + 1)),
      new RegExp(`^ERR value too large \\(${limit + 1} bytes > limit ${limit}\\)`),
    )
    assert.equal(await client.set("e2e:big", "x".repeat(limit)), "OK")
    assert.equal((await client.get("e2e:big"))?.length, limit)
  })

  test("pipelined commands are answered in request order", async () => {
    const keys = Array.from({ length: 30 }, (_, i) => `e2e:pipe:${i}`)
    const setup = connect(node(0).clientPort)
    for (const key of keys) await setup.set(key, key.toUpperCase())
    // One write carrying every request; results complete out of order inside the node.
    let request = ""
    let expected = ""
    keys.forEach((key, i) => {
      request += resp("GET", key) + resp("PING", `p${i}`) + resp("NOPE") + resp("ECHO", `e${i}`)
      expected +=
        `$${key.length}\r\n${key.toUpperCase()}\r\n` +
        `$${`p${i}`.length}\r\np${i}\r\n` +
        "-ERR unknown command 'NOPE', with args beginning with: \r\n" +
        `$${`e${i}`.length}\r\ne${i}\r\n`
    })
    const { received } = await exchange(node(2).clientPort, request, {
      until: (r) => r.length >= expected.length,
    })
    assert.equal(received, expected)
    const pipeline = connect(node(1).clientPort).pipeline()
    for (const key of keys) pipeline.get(key).echo(key)
    const results = await pipeline.exec()
    assert.deepEqual(
      results?.map(([, value]) => value),
      keys.flatMap((k) => [k.toUpperCase(), k]),
    )
  })

  test("CONN-1: a pipelined SET then GET (and DEL then GET) of the same key on one connection reads the write, through every node", async () => {
    // The clients' own idiom: node-redis sends Promise.all([set, get]) as one pipeline.
    const wrong: Array<string> = []
    for (let i = 0; i < 3; i++) {
      const client = connect(node(i).clientPort)
      const keys = Array.from({ length: 100 }, (_, j) => `e2e:conn1:${i}:${j}`)
      const pipeline = client.pipeline()
      for (const key of keys) pipeline.set(key, `${key}=1`).get(key).del(key).get(key).set(key, "2")
      pipeline.get(keys[0]!)
      const results = (await pipeline.exec())!.map(([error, value]) => error?.message ?? value)
      keys.forEach((key, j) => {
        const got = results.slice(j * 5, j * 5 + 5)
        const want = ["OK", `${key}=1`, 1, null, "OK"]
        if (JSON.stringify(got) !== JSON.stringify(want))
          wrong.push(`${key}: ${JSON.stringify(got)}`)
      })
      assert.equal(results.at(-1), "2")
    }
    assert.deepEqual(wrong, [], "pipelined commands on a key took effect out of order")
  })

  test("a malformed RESP stream gets a protocol error and only that connection closes", async () => {
    const bystander = connect(node(0).clientPort)
    assert.equal(await bystander.set("e2e:bystander", "still here"), "OK")
    for (const garbage of ["*1\r\n$abc\r\n", "*2\r\n$3\r\nGET\r\n:12\r\n", "*-5\r\n"]) {
      const { received, closed } = await exchange(node(0).clientPort, garbage)
      assert.ok(closed, `connection left open after ${JSON.stringify(garbage)}`)
      assert.match(received, /^-ERR Protocol error: /)
    }
    // Replies already owed are sent before the error.
    const { received } = await exchange(node(0).clientPort, `${resp("PING")}*1\r\n$x\r\n`)
    assert.match(received, /^\+PONG\r\n-ERR Protocol error: /)
    assert.equal(await bystander.get("e2e:bystander"), "still here")
    assert.equal(await connect(node(0).clientPort).ping(), "PONG")
  })

  test("malformed peer frames close that peer connection and the node keeps serving", async () => {
    const target = node(1)
    const hello = (cluster: string) =>
      encodeFrame(JSON.stringify({ _tag: "Hello", from: "n0", cluster }))
    const oversized = Buffer.alloc(4)
    oversized.writeUInt32BE(0xffff_ffff)
    const cases: ReadonlyArray<readonly [string, Buffer]> = [
      ["garbage bytes", Buffer.from("this is not a frame at all\r\n")],
      ["an oversized length prefix", oversized],
      ["a frame that is not JSON", encodeFrame("{not json")],
      ["a first frame that is not a Hello", encodeFrame(JSON.stringify({ _tag: "Heartbeat" }))],
      ["a Hello for another cluster", hello("some-other-cluster")],
      [
        "a valid Hello then a frame with a bad schema",
        Buffer.concat([hello("e2e"), encodeFrame(JSON.stringify({ _tag: "WriteAck", rid: "x" }))]),
      ],
      [
        "a valid Hello then an unknown message",
        Buffer.concat([hello("e2e"), encodeFrame(JSON.stringify({ _tag: "Gossip", x: 1 }))]),
      ],
    ]
    for (const [what, bytes] of cases) {
      const { closed } = await exchange(target.peerPort, bytes)
      assert.ok(closed, `peer connection left open after ${what}`)
    }
    const client = connect(target.clientPort)
    assert.equal(await client.set("e2e:after-bad-frames", "ok"), "OK")
    assert.equal(await connect(node(2).clientPort).get("e2e:after-bad-frames"), "ok")
    assert.match(await client.info("stats"), /peer_connections_rejected:[1-9]/)
  })

  test("KV-10: a node's object never regresses under what a fake peer sends it: a stale copy changes nothing, a copy older than the message-age bound is dropped, a concurrent one is joined", async () => {
    const target = node(1)
    const own = async (key: string) => new DhtClient(connect(target.clientPort)).get(key, { r: 1 })
    const clockOf = (token: string) => {
      const clock = Context.decode(token, "dht-context:e2e")
      assert.ok(Array.isArray(clock), String(clock))
      return clock as Version.Clock
    }
    const dht = new DhtClient(connect(node(0).clientPort))
    const key = "e2e:kv10:key"
    const first = await dht.put(key, "v1")
    const second = await dht.put(key, "v2", { context: first })
    await pollUntil("the target to hold v2", async () => (await own(key)).siblings[0] === "v2")
    const [[a1, c1]] = clockOf(first) as [[string, number]]
    const sibling = (value: string) => ({ value, ts: Date.now() * 1024 })
    const repair = (k: string, entries: ReadonlyArray<Version.Entry>, at: number) =>
      encodeFrame(JSON.stringify({ _tag: "Repair", key: k, obj: { entries }, at }))
    const stats = async () => {
      const text = await connect(target.clientPort).info("stats")
      return Number(/stale_messages_dropped:(\d+)/.exec(text)?.[1] ?? Number.NaN)
    }
    const staleBefore = await stats()
    const fresh = "e2e:kv10:fresh"
    const old = "e2e:kv10:old"
    const bytes = Buffer.concat([
      encodeFrame(JSON.stringify({ _tag: "Hello", from: "n0", cluster: "e2e" })),
      // The write v2 superseded, sent again: its dot is covered, nothing may change.
      repair(key, [{ actor: a1, counter: c1, values: [sibling("v1")] }], Date.now()),
      // A new value, but stamped long before the message-age bound: dropped.
      repair(
        old,
        [{ actor: "n0", counter: 7, values: [sibling("too-old")] }],
        Date.now() - 3_600_000,
      ),
      // A value concurrent with v2, fresh: joined beside it.
      repair(key, [{ actor: "n9", counter: 1, values: [sibling("beside")] }], Date.now()),
      repair(fresh, [{ actor: "n0", counter: 3, values: [sibling("fresh")] }], Date.now()),
    ])
    await exchange(target.peerPort, bytes, { timeoutMs: 300 })
    // Messages on one connection are handled in order: once the last shows, all were.
    await pollUntil("the target to take the last copy", async () =>
      (await own(fresh)).siblings.includes("fresh"),
    )
    const after = await own(key)
    assert.deepEqual([...after.siblings].sort(), ["beside", "v2"], "not the join")
    const joined = clockOf(after.context)
    for (const [actor, counter] of clockOf(second)) {
      assert.ok(Version.descends(joined, [[actor, counter]]), `${actor}:${counter} forgotten`)
    }
    assert.ok(Version.descends(joined, [["n9", 1]]))
    assert.deepEqual((await own(old)).siblings, [], "a copy older than the bound was stored")
    assert.ok((await stats()) > staleBefore, "the old copy was not counted as dropped")
    assert.deepEqual([...(await dht.get(key, { r: 3 })).siblings].sort(), ["beside", "v2"])
  })

  test("KV-3, KV-11: with one of three nodes killed (SIGKILL), the other two keep serving, and a read or write asking for all three replicas is never answered by two; it recovers", async () => {
    const before = Array.from({ length: 10 }, (_, i) => `e2e:kill:before:${i}`)
    const strict = Array.from({ length: 4 }, (_, i) => `e2e:kill:strict:${i}`)
    const writer = connect(node(0).clientPort)
    for (const key of [...before, ...strict]) assert.equal(await writer.set(key, `${key}=v1`), "OK")
    await three!.kill(2, "SIGKILL")
    const during = Array.from({ length: 10 }, (_, i) => `e2e:kill:during:${i}`)
    for (const [i, key] of during.entries()) {
      const via = connect(node(i % 2).clientPort)
      assert.equal(await via.set(key, `${key}=v2`), "OK")
      assert.equal(await connect(node(1 - (i % 2)).clientPort).get(key), `${key}=v2`)
    }
    for (const key of before) assert.equal(await connect(node(1).clientPort).get(key), `${key}=v1`)
    // KV-11: two distinct replicas can answer, so R=3 and W=3 must fail (each answer counted
    // once), on both live coordinators, however long they wait.
    const refusals = await Promise.all(
      strict.flatMap((key, i) => {
        const via = connect(node(i % 2).clientPort)
        return [
          via.call("DHT.GET", key, "R", "3").then(
            (r) => `answered ${JSON.stringify(r)}`,
            (e: Error) => e.message,
          ),
          via.call("DHT.PUT", key, "w3", "W", "3").then(
            (r) => `answered ${JSON.stringify(r)}`,
            (e: Error) => e.message,
          ),
        ]
      }),
    )
    assert.equal(refusals.filter((r) => r.includes("(R=3")).length, 4)
    assert.equal(refusals.filter((r) => r.includes("(W=3")).length, 4)
    for (const r of refusals) {
      assert.match(r, /^ERR quorum not met: 2 of 3 required replicas answered \((R|W)=3, N=3\)/)
    }
    await three!.restart(2)
    const back = connect(node(2).clientPort)
    const observers = [0, 1].map((i) => connect(node(i).clientPort))
    await pollUntil("the restarted node and its peers to reconnect", async () => {
      const [n0, n1, n2] = await Promise.all([...observers, back].map((c) => c.info("cluster")))
      return (
        /n2@[^,]*:connected/.test(n0!) &&
        /n2@[^,]*:connected/.test(n1!) &&
        /n0@[^,]*:connected.*n1@[^,]*:connected/.test(n2!)
      )
    })
    for (const key of before) assert.equal(await back.get(key), `${key}=v1`)
    for (const key of during) assert.equal(await back.get(key), `${key}=v2`)
    // With the third replica back, the same quorums are met. (A failed W=3 write is
    // indeterminate: it may have landed on the two live replicas, as a sibling of v1.)
    for (const [i, key] of strict.entries()) {
      const via = new DhtClient(connect(node(i % 3).clientPort))
      const read = await via.get(key, { r: 3 })
      assert.ok(read.siblings.includes(`${key}=v1`), JSON.stringify(read.siblings))
      assert.ok(
        read.siblings.every((v) => [`${key}=v1`, "w3"].includes(v)),
        read.siblings.join(),
      )
      await via.put(key, "all", { context: read.context, w: 3 })
      assert.deepEqual((await via.get(key, { r: 3 })).siblings, ["all"])
    }
  })

  test("KV-8: on a 2-node Chord ring with N=3 (every key's successor list has two nodes), a request asking W=3 or R=3 fails at once with the quorum error naming the 2 known replicas; W=2 and R=2 succeed", async () => {
    const observers = pair!.nodes.map((n) => connect(n.clientPort))
    await pollUntil("the two nodes to form one ring", async () => {
      const dht = new DhtClient(observers[0]!)
      await dht.put("e2e:pair:probe", "x", { w: 2 })
      return (
        (await new DhtClient(observers[1]!).get("e2e:pair:probe", { r: 2 })).siblings[0] === "x"
      )
    })
    const keys = Array.from({ length: 10 }, (_, i) => `e2e:pair:${i}`)
    let refused = 0
    for (const [i, key] of keys.entries()) {
      const client = connect(pair!.nodes[i % 2]!.clientPort)
      const started = Date.now()
      await rejects(
        client.call("DHT.PUT", key, "three", "W", "3"),
        /quorum not met: 2 replica\(s\) known for this key, fewer than W=3/,
      )
      await rejects(
        client.call("DHT.GET", key, "R", "3"),
        /quorum not met: 2 replica\(s\) known for this key, fewer than R=3/,
      )
      // At once: no request was sent, so nothing waited for the 2 s request timeout.
      assert.ok(Date.now() - started < 1500, `refusals took ${Date.now() - started} ms`)
      refused += 2
      const dht = new DhtClient(connect(pair!.nodes[(i + 1) % 2]!.clientPort))
      await dht.put(key, "two", { w: 2 })
      assert.deepEqual((await dht.get(key, { r: 2 })).siblings, ["two"])
    }
    assert.equal(refused, 20)
  })

  test("a node joins a running cluster over TCP, serves every key, then leaves", async () => {
    const keys = Array.from({ length: 30 }, (_, i) => `e2e:join:${i}`)
    const writer = connect(node(0).clientPort)
    for (const key of keys) assert.equal(await writer.set(key, `${key}!`), "OK")
    const i = await three!.join()
    const joiner = three!.nodes[i]!
    const observer = connect(node(1).clientPort)
    const viaJoiner = connect(joiner.clientPort)
    await pollUntil("the joiner to be up everywhere", async () => {
      const views = await Promise.all([observer, viaJoiner].map((c) => c.info("cluster")))
      return views.every((v) => new RegExp(`members:.*${joiner.id}:up@`).test(v))
    })
    assert.deepEqual(
      await viaJoiner.mget(...keys),
      keys.map((k) => `${k}!`),
    )
    assert.equal(await viaJoiner.set("e2e:join:new", "fresh"), "OK")
    assert.equal(await observer.get("e2e:join:new"), "fresh")
    // Leaving streams its data out; then the cluster removes it and the process exits.
    const exited = new Promise((resolve) => joiner.process.once("exit", resolve))
    assert.match((await viaJoiner.call("DHT.LEAVE")) as string, /leaving/)
    await exited
    await pollUntil("the others to see the leaver removed", async () =>
      new RegExp(`members:.*${joiner.id}:removed@`).test(await observer.info("cluster")),
    )
    assert.deepEqual(await observer.mget(...keys, "e2e:join:new"), [
      ...keys.map((k) => `${k}!`),
      "fresh",
    ])
  })

  test("DUR-1, DUR-2, KV-1: an lmdb node reads back exactly what it acknowledged — every write's last value, deleted keys absent, no other key — after SIGKILL and restart, and after a clean stop and restart", async () => {
    const port = single!.nodes[0]!.clientPort
    const client = connect(port)
    const keys = Array.from({ length: 200 }, (_, i) => `e2e:durable:${i}`)
    const pipeline = client.pipeline()
    for (const key of keys) pipeline.set(key, `${key}!`)
    // Overwrites and deletes, acknowledged too: the store must hold the last of each.
    for (const key of keys.filter((_, i) => i % 5 === 1)) pipeline.set(key, `${key}!!`)
    for (const key of keys.filter((_, i) => i % 5 === 2)) pipeline.del(key)
    // A key over the store's 1900-byte key limit is stored under a digest and reads back.
    const long = `e2e:durable:long:${"x".repeat(3000)}`
    pipeline.set(long, "long!")
    const acks = await pipeline.exec()
    assert.ok(acks?.every(([error]) => error === null))
    const expected = keys.map((k, i) => (i % 5 === 1 ? `${k}!!` : i % 5 === 2 ? null : `${k}!`))
    const live = expected.filter((v) => v !== null).length + 1
    const readBack = async (): Promise<void> => {
      // n = r = 1: the node answers from its own disk alone.
      const c = connect(port)
      assert.deepEqual(await c.mget(...keys), expected)
      assert.equal(await c.get(long), "long!")
      assert.equal(await c.dbsize(), live, "the store holds keys nobody wrote, or lost some")
    }
    await single!.kill(0, "SIGKILL")
    client.disconnect()
    await single!.restart(0)
    await readBack()
    // A clean stop closes the store; it reopens with the same contents.
    await single!.kill(0, "SIGTERM")
    await single!.restart(0)
    await readBack()
  })
})
