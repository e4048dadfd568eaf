/**
 * effect-conductor: durable tasks and workflows for Effect, on Postgres.
 *
 * @since 0.1.0
 */
export * as Conductor from "./Conductor.ts"
export * as Durable from "./Durable.ts"
export * as Errors from "./Errors.ts"
export * as Execution from "./Execution.ts"
export * as MemoryStore from "./MemoryStore.ts"
export * as PgStore from "./PgStore.ts"
export * as Task from "./Task.ts"
export * as TestConductor from "./TestConductor.ts"
export * as Worker from "./Worker.ts"
