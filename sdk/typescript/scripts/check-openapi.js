#!/usr/bin/env node
// Compares the SDK's hand-written Transaction type with the server's exported OpenAPI schema (repo root
// openapi.json): field names, which fields may be null, and the status / decision_reason values; and the members of
// the error object (ErrorDetail) with the schema's ErrorObject.
// Usage: node scripts/check-openapi.js [path/to/openapi.json]   (exit 1 on a difference; 0 if no file yet)
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import {
  DECISION_REASONS,
  ERROR_DETAIL_FIELDS,
  NULLABLE_TRANSACTION_FIELDS,
  TRANSACTION_FIELDS,
  TRANSACTION_STATUSES,
} from "../dist/esm/index.js";

export const DEFAULT_OPENAPI_PATH = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "openapi.json");

/** The differences between the SDK's Transaction and the schema in `openapi` (an empty list when they agree). */
export function compareTransactionSchema(openapi) {
  const schemas = openapi?.components?.schemas ?? {};
  const deref = (schema) => {
    for (let i = 0; schema?.$ref && i < 20; i++) {
      schema = schemas[schema.$ref.replace("#/components/schemas/", "")];
    }
    return schema ?? {};
  };
  const variants = (schema) => {
    schema = deref(schema);
    const members = schema.anyOf ?? schema.oneOf ?? schema.allOf;
    return members ? members.flatMap(variants) : [schema];
  };
  const isNullable = (schema) =>
    deref(schema).nullable === true ||
    variants(schema).some((v) => v.type === "null" || (Array.isArray(v.type) && v.type.includes("null")) || v.nullable === true);
  const enumOf = (schema) => {
    const values = variants(schema).flatMap((v) => v.enum ?? ("const" in v ? [v.const] : []));
    return values.filter((v) => v !== null);
  };

  const name =
    ("Transaction" in schemas && "Transaction") ||
    Object.keys(schemas).find((key) => enumOf(schemas[key]?.properties?.object ?? {}).includes("transaction"));
  if (!name) return ["no Transaction schema in components.schemas"];
  const properties = deref(schemas[name]).properties ?? {};

  const problems = [];
  const ours = new Set(TRANSACTION_FIELDS);
  const theirs = new Set(Object.keys(properties));
  for (const field of ours) if (!theirs.has(field)) problems.push(`${field}: in the SDK, not in openapi.json`);
  for (const field of theirs) if (!ours.has(field)) problems.push(`${field}: in openapi.json, not in the SDK`);
  for (const field of TRANSACTION_FIELDS) {
    if (!theirs.has(field)) continue;
    const nullableHere = NULLABLE_TRANSACTION_FIELDS.includes(field);
    if (isNullable(properties[field]) !== nullableHere) {
      problems.push(`${field}: ${nullableHere ? "nullable" : "not nullable"} in the SDK, the opposite in openapi.json`);
    }
  }
  for (const [field, values] of [["status", TRANSACTION_STATUSES], ["decision_reason", DECISION_REASONS]]) {
    const theirValues = properties[field] ? enumOf(properties[field]) : [];
    if (theirValues.length === 0) continue; // a plain string in the schema: nothing to compare
    const missing = values.filter((v) => !theirValues.includes(v));
    const extra = theirValues.filter((v) => !values.includes(v));
    if (missing.length) problems.push(`${field}: ${missing.join(", ")} in the SDK, not in openapi.json`);
    if (extra.length) problems.push(`${field}: ${extra.join(", ")} in openapi.json, not in the SDK`);
  }
  return problems;
}

/** The differences between the SDK's ErrorDetail members and the schema's ErrorObject (empty when they agree). */
export function compareErrorSchema(openapi) {
  const error = openapi?.components?.schemas?.ErrorObject;
  if (!error) return ["no ErrorObject schema in components.schemas"];
  const ours = new Set(ERROR_DETAIL_FIELDS);
  const theirs = new Set(Object.keys(error.properties ?? {}));
  return [
    ...[...ours].filter((f) => !theirs.has(f)).map((f) => `error.${f}: in the SDK, not in openapi.json`),
    ...[...theirs].filter((f) => !ours.has(f)).map((f) => `error.${f}: in openapi.json, not in the SDK`),
  ];
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const path = resolve(process.argv[2] ?? DEFAULT_OPENAPI_PATH);
  if (!existsSync(path)) {
    console.log(`No ${path} yet: nothing to check.`);
  } else {
    const openapi = JSON.parse(readFileSync(path, "utf8"));
    const problems = [...compareTransactionSchema(openapi), ...compareErrorSchema(openapi)];
    if (problems.length) {
      console.error(`Transaction or ErrorDetail differs from ${path}:\n  ${problems.join("\n  ")}`);
      process.exitCode = 1;
    } else {
      console.log(`Transaction and ErrorDetail match ${path}.`);
    }
  }
}
