import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

/** exact installed version of a package from bench/node_modules */
export const installedVersion = (name: string): string => {
  try {
    const p = fileURLToPath(new URL(`../node_modules/${name}/package.json`, import.meta.url))
    return JSON.parse(readFileSync(p, "utf8")).version
  } catch {
    return "not installed"
  }
}
