/**
 * The `dht` command: dispatches to subcommands through one registry, so adding one is one line.
 * Run it as `npx tsx impl/cli/main.ts <command> …`, `npm run dht -- <command> …`, or `bin/dht.mjs`.
 */
import type { Subcommand } from "./args.ts"
import * as Cluster from "./cluster.ts"
import * as Node from "./node.ts"
import * as Ops from "./ops.ts"
import * as Ring from "./ring.ts"
import * as Status from "./status.ts"
import * as Verify from "./verify.ts"

/** Every subcommand, in the order `dht --help` lists them. */
export const commands: Readonly<Record<string, Subcommand>> = {
  node: Node.command,
  cluster: Cluster.command,
  status: Status.command,
  ring: Ring.command,
  join: Ops.joinCommand,
  leave: Ops.leaveCommand,
  remove: Ops.removeCommand,
  verify: Verify.command,
}

const overview = (): string => {
  const names = Object.keys(commands)
  const width = Math.max(...names.map((n) => n.length)) + 2
  const lines = names.map((name) => `  ${name.padEnd(width)}${commands[name]!.spec.summary}`)
  return [
    "dht — a Dynamo-style distributed hash table (speaks the Redis protocol)",
    "",
    "Usage: dht <command> [options]      dht <command> --help",
    "",
    "Commands:",
    ...lines,
    "",
    "Quick start: dht cluster --nodes 3, then redis-cli -p 7001",
    "",
  ].join("\n")
}

export const main = async (argv: ReadonlyArray<string>): Promise<number> => {
  const [name, ...rest] = argv
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    const topic = name === "help" ? rest[0] : undefined
    const command = topic === undefined ? undefined : commands[topic]
    if (command !== undefined) return command.run(["--help"])
    process.stdout.write(overview())
    return name === undefined ? 2 : 0
  }
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined
  if (command === undefined) {
    process.stderr.write(`dht: unknown command "${name}"\n\n${overview()}`)
    return 2
  }
  return command.run(rest)
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`dht: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
    process.exit(1)
  },
)
