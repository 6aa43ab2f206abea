/**
 * A TypeScript client for the causal API, over any Redis client (ioredis here). Plain GET/SET
 * work through the Redis client itself; this adds DHT.GET / DHT.PUT / DHT.DEL with contexts:
 *
 *   const dht = new DhtClient(new Redis(7001))
 *   const { context, siblings } = await dht.get("cart")
 *   await dht.put("cart", merge(siblings), { context })   // supersedes exactly what was read
 *
 * Values are byte strings (one char per byte), as on the wire; use `utf8Bytes` for text.
 */
import type { Redis } from "ioredis"

export interface Read {
  /** Opaque causal context; hand it back with the write that resolves what you read. */
  readonly context: string
  /** True when every sibling is a tombstone (the key was deleted). */
  readonly deleted: boolean
  /** The live sibling values (concurrent writes not yet resolved). */
  readonly siblings: ReadonlyArray<string>
}

export interface WriteOptions {
  readonly context?: string
  readonly w?: number
}

const latin1 = (b: Buffer | string): string => (typeof b === "string" ? b : b.toString("latin1"))

export class DhtClient {
  constructor(private readonly redis: Redis) {}

  async get(key: string, options: { readonly r?: number } = {}): Promise<Read> {
    const args: Array<string | Buffer> = [Buffer.from(key, "latin1")]
    if (options.r !== undefined) args.push("R", String(options.r))
    const reply = (await this.redis.callBuffer("DHT.GET", ...args)) as Array<unknown>
    const fields = new Map<string, unknown>()
    for (let i = 0; i + 1 < reply.length; i += 2) {
      fields.set(latin1(reply[i] as Buffer), reply[i + 1])
    }
    return {
      context: latin1(fields.get("context") as Buffer),
      deleted: Number(fields.get("deleted")) === 1,
      siblings: ((fields.get("siblings") as Array<Buffer>) ?? []).map(latin1),
    }
  }

  /** Write `value`; returns the new context. Without a context it adds a sibling. */
  async put(key: string, value: string, options: WriteOptions = {}): Promise<string> {
    return this.write("DHT.PUT", [key, value], options)
  }

  /** Delete (a causal tombstone); returns the new context. */
  async del(key: string, options: WriteOptions = {}): Promise<string> {
    return this.write("DHT.DEL", [key], options)
  }

  private async write(
    command: string,
    head: ReadonlyArray<string>,
    options: WriteOptions,
  ): Promise<string> {
    const args: Array<string | Buffer> = head.map((s) => Buffer.from(s, "latin1"))
    if (options.context !== undefined) args.push("CONTEXT", options.context)
    if (options.w !== undefined) args.push("W", String(options.w))
    return latin1((await this.redis.callBuffer(command, ...args)) as Buffer)
  }
}
