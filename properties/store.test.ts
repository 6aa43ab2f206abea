/**
 * The on-disk store (impl/node/store.ts, LMDB) against a Map: generated puts, removes, drops
 * and long keys, every write awaited as the driver awaits it, then the store closed and opened
 * again. The directory's name has a dot in it, as many real paths do.
 */
import assert from "node:assert/strict"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { after, test } from "./helpers/test.ts"
import fc from "fast-check"
import * as Version from "../impl/core/version.ts"
import { openLmdb } from "../impl/node/store.ts"
import { params } from "./helpers/fc.ts"

const roots: Array<string> = []
after(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true })
})

const objOf = (value: string, counter: number): Version.Obj =>
  Version.update(Version.empty, Version.emptyClock, { value, ts: counter }, "n0")

type Op =
  | { readonly _tag: "Put"; readonly key: string; readonly value: string }
  | { readonly _tag: "Remove"; readonly key: string }
  | { readonly _tag: "Drop"; readonly key: string; readonly stale: boolean }

const keyArb = fc.oneof(
  fc.constantFrom("a", "b", "c", "user:1", "ü-ключ"),
  // Keys past LMDB's key-size limit live under a digest in a second database.
  fc.nat(3).map((i) => `long:${i}:${"x".repeat(2500)}`),
)

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ _tag: fc.constant("Put" as const), key: keyArb, value: fc.string({ maxLength: 8 }) }),
  fc.record({ _tag: fc.constant("Remove" as const), key: keyArb }),
  fc.record({ _tag: fc.constant("Drop" as const), key: keyArb, stale: fc.boolean() }),
)

test("DUR-2: the LMDB store reads back, after close and reopen, exactly what it acknowledged, in any data directory", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { maxLength: 40 }), async (ops) => {
      const root = mkdtempSync(join(tmpdir(), "dht-store."))
      roots.push(root)
      const dir = join(root, "data.v1")
      const model = new Map<string, Version.Obj>()
      let opened = openLmdb(dir)
      let counter = 0
      for (const op of ops) {
        const held = model.get(op.key)
        switch (op._tag) {
          case "Put": {
            const obj = objOf(op.value, counter++)
            await opened.store.put(op.key, obj)
            model.set(op.key, obj)
            break
          }
          case "Remove":
            await opened.store.remove(op.key)
            model.delete(op.key)
            break
          case "Drop": {
            // A drop names the object it expects; a stale one must change nothing.
            const named = op.stale || held === undefined ? objOf("stale", -1) : held
            await opened.store.drop(op.key, named)
            if (held !== undefined && Version.equals(held, named)) model.delete(op.key)
            break
          }
        }
        assert.deepEqual(
          opened.store.get(op.key),
          model.get(op.key),
          `after ${op._tag} ${op.key.slice(0, 20)}`,
        )
      }
      await opened.close()
      opened = openLmdb(dir)
      try {
        const stored = opened.store.scan(undefined, 1000)
        const expected = [...model.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        assert.deepEqual(
          stored.map(([k]) => k),
          expected.map(([k]) => k),
        )
        for (const [key, obj] of expected) assert.deepEqual(opened.store.get(key), obj)
      } finally {
        await opened.close()
      }
    }),
    params(30),
  )
})
