#!/usr/bin/env node
// The `dht` command: runs impl/cli/main.ts through tsx's loader, in this process.
import { register } from "tsx/esm/api"

register()
await import("../impl/cli/main.ts")
