/**
 * A dependency-free SVG plot of Chord's measured path length against N (log2 x axis): the mean
 * as points joined by a line, the 1st and 99th percentiles as error bars, and the paper's
 * ½·log2 N as a dashed reference curve.
 *
 *   npx tsx impl/cli/plot-svg.ts results.json docs/chord-path-length.svg
 *
 * reads the JSON that `impl/cli/sim-chord.ts --out` writes (its `path` array). sim-chord.ts also
 * calls `pathLengthSvg` directly behind its --svg flag. Output is deterministic text (fixed
 * decimals, no timestamps), so regenerating it from the same JSON gives the same file.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { pathToFileURL } from "node:url"

export interface PathPoint {
  readonly nodes: number
  readonly mean: number
  readonly p1: number
  readonly p99: number
}

const W = 640
const H = 420
const M = { left: 60, right: 20, top: 40, bottom: 55 }

const fmt = (x: number): string => x.toFixed(1)

const escapeXml = (text: string): string =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

export const pathLengthSvg = (points: ReadonlyArray<PathPoint>, title?: string): string => {
  if (points.length === 0) throw new Error("no points to plot")
  const sorted = [...points].sort((a, b) => a.nodes - b.nodes)
  const kMin = Math.floor(Math.log2(sorted[0]!.nodes))
  const kMax = Math.max(kMin + 1, Math.ceil(Math.log2(sorted[sorted.length - 1]!.nodes)))
  const yMax = Math.max(2, Math.ceil(Math.max(...sorted.map((p) => p.p99), kMax / 2) + 1))
  const plotW = W - M.left - M.right
  const plotH = H - M.top - M.bottom
  const x = (n: number) => M.left + ((Math.log2(n) - kMin) / (kMax - kMin)) * plotW
  const y = (v: number) => M.top + plotH - (v / yMax) * plotH
  const out: Array<string> = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" ` +
      `viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  )
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`)
  out.push(
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">` +
      `${escapeXml(title ?? "Chord lookup path length (hops) against number of nodes")}</text>`,
  )
  // Axes, grid and ticks.
  out.push(`<g stroke="#ddd">`)
  for (let v = 0; v <= yMax; v++)
    out.push(`<line x1="${M.left}" y1="${fmt(y(v))}" x2="${W - M.right}" y2="${fmt(y(v))}"/>`)
  for (let k = kMin; k <= kMax; k++)
    out.push(
      `<line x1="${fmt(x(2 ** k))}" y1="${M.top}" x2="${fmt(x(2 ** k))}" y2="${M.top + plotH}"/>`,
    )
  out.push(`</g>`)
  out.push(
    `<g stroke="black"><line x1="${M.left}" y1="${M.top + plotH}" x2="${W - M.right}" ` +
      `y2="${M.top + plotH}"/><line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + plotH}"/></g>`,
  )
  for (let k = kMin; k <= kMax; k++) {
    out.push(
      `<text x="${fmt(x(2 ** k))}" y="${M.top + plotH + 18}" text-anchor="middle">2<tspan dy="-6" font-size="9">${k}</tspan></text>`,
    )
  }
  for (let v = 0; v <= yMax; v += yMax > 12 ? 2 : 1) {
    out.push(`<text x="${M.left - 8}" y="${fmt(y(v) + 4)}" text-anchor="end">${v}</text>`)
  }
  out.push(
    `<text x="${M.left + plotW / 2}" y="${H - 12}" text-anchor="middle">number of nodes N (log scale)</text>`,
  )
  out.push(
    `<text x="16" y="${M.top + plotH / 2}" text-anchor="middle" ` +
      `transform="rotate(-90 16 ${M.top + plotH / 2})">path length (hops)</text>`,
  )
  // The paper's ½·log2 N.
  const curve: Array<string> = []
  for (let i = 0; i <= 40; i++) {
    const k = kMin + ((kMax - kMin) * i) / 40
    curve.push(`${fmt(x(2 ** k))},${fmt(y(k / 2))}`)
  }
  out.push(
    `<polyline points="${curve.join(" ")}" fill="none" stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 4"/>`,
  )
  // Percentile bars, the mean line and points.
  out.push(`<g stroke="#1f77b4" stroke-width="1.5">`)
  for (const p of sorted) {
    const px = fmt(x(p.nodes))
    out.push(`<line x1="${px}" y1="${fmt(y(p.p1))}" x2="${px}" y2="${fmt(y(p.p99))}"/>`)
    out.push(
      `<line x1="${fmt(x(p.nodes) - 5)}" y1="${fmt(y(p.p1))}" x2="${fmt(x(p.nodes) + 5)}" y2="${fmt(y(p.p1))}"/>`,
    )
    out.push(
      `<line x1="${fmt(x(p.nodes) - 5)}" y1="${fmt(y(p.p99))}" x2="${fmt(x(p.nodes) + 5)}" y2="${fmt(y(p.p99))}"/>`,
    )
  }
  out.push(`</g>`)
  out.push(
    `<polyline points="${sorted.map((p) => `${fmt(x(p.nodes))},${fmt(y(p.mean))}`).join(" ")}" ` +
      `fill="none" stroke="#1f77b4" stroke-width="2"/>`,
  )
  for (const p of sorted)
    out.push(`<circle cx="${fmt(x(p.nodes))}" cy="${fmt(y(p.mean))}" r="4" fill="#1f77b4"/>`)
  // Legend.
  const lx = M.left + 16
  const ly = M.top + 14
  out.push(
    `<line x1="${lx}" y1="${ly}" x2="${lx + 24}" y2="${ly}" stroke="#1f77b4" stroke-width="2"/>`,
  )
  out.push(`<circle cx="${lx + 12}" cy="${ly}" r="4" fill="#1f77b4"/>`)
  out.push(`<text x="${lx + 32}" y="${ly + 4}">measured mean, bars: 1st-99th percentile</text>`)
  out.push(
    `<line x1="${lx}" y1="${ly + 20}" x2="${lx + 24}" y2="${ly + 20}" stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 4"/>`,
  )
  out.push(`<text x="${lx + 32}" y="${ly + 24}">½·log2 N (Stoica et al. 2001)</text>`)
  out.push(`</svg>`)
  return `${out.join("\n")}\n`
}

const main = (argv: ReadonlyArray<string>): number => {
  const [input, output] = argv
  if (input === undefined || output === undefined || input === "--help" || input === "-h") {
    process.stdout.write("Usage: npx tsx impl/cli/plot-svg.ts RESULTS.json OUT.svg\n")
    return input === undefined || output === undefined ? 2 : 0
  }
  const data = JSON.parse(readFileSync(input, "utf8")) as { path?: ReadonlyArray<PathPoint> }
  if (!Array.isArray(data.path) || data.path.length === 0) {
    process.stderr.write(`${input}: no "path" results (run sim-chord with --experiment path)\n`)
    return 1
  }
  writeFileSync(output, pathLengthSvg(data.path))
  process.stderr.write(`wrote ${output}\n`)
  return 0
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = main(process.argv.slice(2))
}
