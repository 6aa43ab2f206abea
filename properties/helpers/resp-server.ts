/**
 * A RESP server (impl/node/resp-server.ts) on a free port with no node behind it: the test gives
 * what it needs (how client operations are answered, whether the node is starting, a clock) and
 * the rest is inert. Stopped when `body` settles.
 */
import { Effect, Either } from "effect"
import * as Config from "../../impl/node/config.ts"
import type { Log } from "../../impl/node/log.ts"
import * as RespServer from "../../impl/node/resp-server.ts"
import * as Runtime from "../../impl/node/runtime.ts"

export const silentLog: Log = { info: () => {}, warn: () => {}, error: () => {} }

/** A one-node configuration (N = R = W = 1, memory store, client port chosen by the system). */
export const oneNodeConfig = (): Config.Config => {
  const config = Config.make({
    id: "n0",
    members: [{ id: "n0", peerAddress: { host: "127.0.0.1", port: 1 } }],
    client: { host: "127.0.0.1", port: 0 },
    store: "memory",
    n: 1,
    r: 1,
    w: 1,
  })
  if (Either.isLeft(config)) throw new Error(config.left.message)
  return config.right
}

export const withRespServer = <A>(
  options: Partial<RespServer.RespServerOptions> & Pick<RespServer.RespServerOptions, "submit">,
  body: (port: number) => Promise<A>,
): Promise<A> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const server = yield* RespServer.make({
          config: oneNodeConfig(),
          log: silentLog,
          clock: Runtime.systemClock,
          operator: () => {},
          status: () => ({}),
          starting: () => false,
          info: () => [],
          ...options,
        })
        return yield* Effect.promise(() => body(server.listening.port))
      }),
    ),
  )
