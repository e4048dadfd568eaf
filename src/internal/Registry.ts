import { Context, Effect, Layer } from "effect"
import type { AnyTask } from "../Task.ts"

/** A registered handler: the task's contract, the handler, and the services of the layer that registered it. */
export interface RegisteredHandler {
  readonly task: AnyTask
  /** One attempt with the decoded payload; it needs `context` (and `Execution`) provided. */
  readonly handler: (payload: unknown) => Effect.Effect<unknown, unknown, any>
  readonly context: Context.Context<never>
}

/**
 * The handlers known to this process, filled in by `Task.toLayer` layers and
 * read by workers at every claim (so a handler registered late is picked up).
 */
export class Registry extends Context.Service<Registry, {
  readonly register: (handler: RegisteredHandler) => Effect.Effect<void>
  readonly get: (task: string) => RegisteredHandler | undefined
  readonly tasksOfQueue: (queue: string) => ReadonlyArray<string>
  /** Calls `listener` after every registration (workers use it to claim at once). */
  readonly onRegister: (listener: (queue: string) => void) => Effect.Effect<void, never, import("effect").Scope.Scope>
}>()("effect-conductor/internal/Registry") {
  static readonly layer = Layer.sync(Registry, () => {
    const handlers = new Map<string, RegisteredHandler>()
    const listeners = new Set<(queue: string) => void>()
    return Registry.of({
      register: (handler) =>
        Effect.sync(() => {
          handlers.set(handler.task.name, handler)
          for (const listener of listeners) listener(handler.task.queue)
        }),
      onRegister: (listener) =>
        Effect.acquireRelease(Effect.sync(() => listeners.add(listener)), () => Effect.sync(() => listeners.delete(listener))),
      get: (task) => handlers.get(task),
      tasksOfQueue: (queue) => {
        const names: Array<string> = []
        for (const handler of handlers.values()) {
          if (handler.task.queue === queue) names.push(handler.task.name)
        }
        return names
      }
    })
  })
}
