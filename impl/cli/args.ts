/**
 * A small flag parser for the `dht` subcommands: `--name value`, `--name=value`, boolean
 * `--flag`, and `--help`/`-h`. Every subcommand declares its flags once (name, kind, default,
 * help) and gets both parsing and its `--help` text from the declaration.
 *
 * Errors are values with a message meant for a person: unknown flags (with a suggestion),
 * missing values, bad numbers.
 */
import { Data, Either } from "effect"

export type Kind = "string" | "int" | "bool" | "bytes"

export interface Flag {
  readonly name: string
  readonly kind: Kind
  readonly help: string
  /** Shown in --help; applied by the command, not by the parser. */
  readonly default?: string
  /** Placeholder in --help, e.g. "DIR". */
  readonly value?: string
}

export interface CommandSpec {
  readonly name: string
  readonly summary: string
  readonly usage: string
  readonly flags: ReadonlyArray<Flag>
  readonly examples?: ReadonlyArray<string>
  readonly notes?: ReadonlyArray<string>
}

export type Values = Readonly<Record<string, string | number | boolean | undefined>>

export interface Parsed {
  readonly help: boolean
  readonly values: Values
  readonly positional: ReadonlyArray<string>
}

export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
}

/** "512k", "1m", "1048576" → bytes. */
export const parseBytes = (text: string): number | undefined => {
  const m = /^(\d+)\s*([a-z]*)$/i.exec(text.trim())
  if (m === null) return undefined
  const unit = UNITS[m[2]!.toLowerCase()]
  return unit === undefined ? undefined : Number(m[1]) * unit
}

const editDistance = (a: string, b: string): number => {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = cur
    }
  }
  return row[b.length]!
}

const suggest = (name: string, flags: ReadonlyArray<Flag>): string => {
  let best: Flag | undefined
  let bestDistance = Number.POSITIVE_INFINITY
  for (const flag of flags) {
    // A shared first letter breaks ties: `--nde` is a typo of `--n`, not of `--id`.
    const d = editDistance(name, flag.name) - (flag.name[0] === name[0] ? 0.5 : 0)
    if (d < bestDistance) {
      best = flag
      bestDistance = d
    }
  }
  return best !== undefined && bestDistance <= 3 ? ` (did you mean --${best.name}?)` : ""
}

const convert = (flag: Flag, raw: string): Either.Either<string | number | boolean, UsageError> => {
  const bad = (what: string) =>
    Either.left(new UsageError({ message: `--${flag.name} expects ${what}, got "${raw}"` }))
  switch (flag.kind) {
    case "string":
      return raw.length === 0 ? bad("a non-empty value") : Either.right(raw)
    case "int":
      return /^-?\d+$/.test(raw) ? Either.right(Number(raw)) : bad("an integer")
    case "bytes": {
      const bytes = parseBytes(raw)
      return bytes === undefined ? bad("a size such as 1048576, 512k or 4m") : Either.right(bytes)
    }
    case "bool":
      if (/^(true|yes|1)$/i.test(raw)) return Either.right(true)
      if (/^(false|no|0)$/i.test(raw)) return Either.right(false)
      return bad("true or false")
  }
}

/** Parse `argv` (the words after the subcommand name) against `spec`. */
export const parse = (
  spec: CommandSpec,
  argv: ReadonlyArray<string>,
): Either.Either<Parsed, UsageError> => {
  const values: Record<string, string | number | boolean | undefined> = {}
  const positional: Array<string> = []
  const byName = new Map(spec.flags.map((f) => [f.name, f]))
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!
    if (word === "--help" || word === "-h") return Either.right({ help: true, values, positional })
    if (word === "--") {
      positional.push(...argv.slice(i + 1))
      break
    }
    if (!word.startsWith("--")) {
      if (word.startsWith("-") && word.length > 1) {
        return Either.left(
          new UsageError({
            message: `unknown option ${word}: flags are spelled --name (see dht ${spec.name} --help)`,
          }),
        )
      }
      positional.push(word)
      continue
    }
    const eq = word.indexOf("=")
    const name = eq < 0 ? word.slice(2) : word.slice(2, eq)
    const flag = byName.get(name)
    if (flag === undefined) {
      return Either.left(
        new UsageError({
          message: `unknown flag --${name}${suggest(name, spec.flags)}; see dht ${spec.name} --help`,
        }),
      )
    }
    let raw: string
    if (eq >= 0) raw = word.slice(eq + 1)
    else if (flag.kind === "bool" && (argv[i + 1] === undefined || argv[i + 1]!.startsWith("--"))) {
      raw = "true"
    } else {
      const next = argv[i + 1]
      if (next === undefined || (next.startsWith("--") && next.length > 2)) {
        return Either.left(new UsageError({ message: `--${name} needs a value` }))
      }
      raw = next
      i++
    }
    const value = convert(flag, raw)
    if (Either.isLeft(value)) return Either.left(value.left)
    values[name] = value.right
  }
  return Either.right({ help: false, values, positional })
}

/** The --help text of a command. */
export const helpText = (spec: CommandSpec): string => {
  const lines = [`dht ${spec.name} — ${spec.summary}`, "", `Usage: ${spec.usage}`, ""]
  if (spec.flags.length > 0) {
    lines.push("Options:")
    const left = spec.flags.map(
      (f) => `  --${f.name}${f.kind === "bool" ? "" : ` ${f.value ?? f.kind.toUpperCase()}`}`,
    )
    const width = Math.max(...left.map((l) => l.length)) + 2
    spec.flags.forEach((f, i) => {
      const def = f.default !== undefined ? ` (default: ${f.default})` : ""
      lines.push(`${left[i]!.padEnd(width)}${f.help}${def}`)
    })
    lines.push(`${"  --help, -h".padEnd(width)}Show this help`)
  }
  if (spec.notes !== undefined && spec.notes.length > 0) lines.push("", ...spec.notes)
  if (spec.examples !== undefined && spec.examples.length > 0) {
    lines.push("", "Examples:", ...spec.examples.map((e) => `  ${e}`))
  }
  return `${lines.join("\n")}\n`
}

export const str = (values: Values, name: string): string | undefined => {
  const v = values[name]
  return typeof v === "string" ? v : undefined
}

export const num = (values: Values, name: string): number | undefined => {
  const v = values[name]
  return typeof v === "number" ? v : undefined
}

export const bool = (values: Values, name: string): boolean => values[name] === true

/** A `dht` subcommand: its declaration and its entry point (returns the exit code). */
export interface Subcommand {
  readonly spec: CommandSpec
  readonly run: (argv: ReadonlyArray<string>) => Promise<number>
}

/**
 * Parse and handle --help and usage errors the same way for every subcommand: help goes to
 * stdout (exit 0), a usage error to stderr (exit 2).
 */
export const withParsed = async (
  spec: CommandSpec,
  argv: ReadonlyArray<string>,
  run: (parsed: Parsed) => Promise<number>,
): Promise<number> => {
  const parsed = parse(spec, argv)
  if (Either.isLeft(parsed)) {
    process.stderr.write(`dht ${spec.name}: ${parsed.left.message}\n`)
    return 2
  }
  if (parsed.right.help) {
    process.stdout.write(helpText(spec))
    return 0
  }
  return run(parsed.right)
}

/** Report a usage error found after parsing (bad combination of flags). */
export const usageError = (spec: CommandSpec, message: string): number => {
  process.stderr.write(`dht ${spec.name}: ${message}\n`)
  return 2
}

/** A flag declaration in one line: `flag("port", "int", "PORT", "what it does", "7001")`. */
export const flag = (
  name: string,
  kind: Kind,
  value: string,
  help: string,
  defaultText?: string,
): Flag => ({
  name,
  kind,
  value,
  help,
  ...(defaultText === undefined ? {} : { default: defaultText }),
})
