//! JSON Schema pieces for the read models' `schemars` derive: free-form JSON objects get an
//! explicit `type` (an untyped schema accepts anything, and clients warn about it).

use schemars::{Schema, SchemaGenerator, json_schema};

/// A JSON object with any members.
pub fn object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "additionalProperties": true})
}

/// A JSON object with any members, or null.
pub fn object_or_null(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"anyOf": [
        {"type": "object", "additionalProperties": true},
        {"type": "null"}
    ]})
}
