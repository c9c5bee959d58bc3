//! The OpenAPI 3.1 document of the socket API, committed as
//! `schemas/podnet-api.openapi.json` (a test keeps it current). Its component
//! schemas are generated from [`super::types`], so the document and the
//! server's JSON come from the same types.
//!
//! Answers are described as podnetd writes them (every field present,
//! `null` for an absent option); the one request body, [`Endpoint`], as it is
//! read (every field optional, unknown fields refused).

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value as Json};

use super::types::{
    ApiError, Endpoint, EndpointRecord, Node, ReconcileAnswer, Status, Trial, TryAnswer,
};
use super::DEFAULT_SOCKET;

/// Where the component schemas live in the document.
const COMPONENTS: &str = "/components/schemas";

/// The document as committed.
pub fn openapi_json() -> Json {
    let mut schemas = Map::new();
    let settings = |s: &mut SchemaSettings| {
        s.definitions_path = COMPONENTS.into();
        s.meta_schema = None;
    };
    let mut answers = SchemaSettings::draft2020_12()
        .for_serialize()
        .with(settings)
        .into_generator();
    let mut requests = SchemaSettings::draft2020_12()
        .for_deserialize()
        .with(settings)
        .into_generator();
    let status = component::<Status>(&mut answers);
    let node = component::<Node>(&mut answers);
    let record = component::<EndpointRecord>(&mut answers);
    let reconcile = component::<ReconcileAnswer>(&mut answers);
    let try_answer = component::<TryAnswer>(&mut answers);
    let trial = component::<Trial>(&mut answers);
    let error = component::<ApiError>(&mut answers);
    let endpoint = component::<Endpoint>(&mut requests);
    for (name, schema) in answers
        .take_definitions(true)
        .into_iter()
        .chain(requests.take_definitions(true))
    {
        // One name for two different schemas would make a `$ref` lie.
        if let Some(before) = schemas.get(&name) {
            assert_eq!(
                before, &schema,
                "component {name} differs between answers and requests"
            );
        }
        schemas.insert(name, schema);
    }

    let error_answer = |what: &str| {
        json!({
            "description": what,
            "content": {"application/json": {"schema": error.clone()}}
        })
    };
    let ok = |what: &str, schema: &Json| {
        json!({
            "description": what,
            "content": {"application/json": {"schema": schema}}
        })
    };
    // Every route may answer these.
    let common = |mut responses: Map<String, Json>| {
        responses.insert(
            "403".into(),
            error_answer("The peer is neither root nor a member of podnet's group (SO_PEERCRED); the connection is closed."),
        );
        responses.insert(
            "405".into(),
            error_answer("Another method is not allowed; `Allow` names the ones that are."),
        );
        responses.insert(
            "408".into(),
            error_answer("The request's headers or body did not arrive in time (5 s each by default); the connection is closed."),
        );
        responses.insert(
            "default".into(),
            error_answer("Any other failure, with a message."),
        );
        Json::Object(responses)
    };
    let params = json!([
        {"$ref": "#/components/parameters/container_id"},
        {"$ref": "#/components/parameters/ifname"}
    ]);
    let bad_segment = error_answer("A malformed container id or interface name.");

    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "podnet socket API",
            "version": "1",
            "summary": "podnetd's local API: node status, what the CNI plugin needs, the endpoint registry.",
            "description": format!(
                "HTTP/1.1 with JSON bodies on the Unix socket `{DEFAULT_SOCKET}` (mode 0660, root:podnet). \
                 Only root, podnetd's own user and members of podnet's group may use it. \
                 `curl --unix-socket {DEFAULT_SOCKET} http://localhost/v1/status` reads the status. \
                 Requests are bounded: 16 KiB of headers (larger: 431), a 64 KiB body (larger: 413), \
                 5 s each for headers and body (slower: 408)."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "servers": [{
            "url": "http://localhost",
            "description": format!("HTTP/1.1 over the Unix socket {DEFAULT_SOCKET}; the host name is not used.")
        }],
        "paths": {
            "/metrics": {"get": {
                "operationId": "getMetrics",
                "summary": "The daemon for Prometheus: reconciles and their durations, drift repairs, errors by kind, generation, endpoints, each endpoint's shaped bytes and drops.",
                "responses": common(Map::from_iter([("200".into(), json!({
                    "description": "The metrics in the OpenMetrics text format.",
                    "content": {crate::api::METRICS_CONTENT_TYPE: {"schema": {"type": "string"}}}
                }))]))
            }},
            "/v1/status": {"get": {
                "operationId": "getStatus",
                "summary": "Where the node stands: generation, last reconcile, each declared object.",
                "responses": common(Map::from_iter([("200".into(), ok("The node's status.", &status))]))
            }},
            "/v1/node": {"get": {
                "operationId": "getNode",
                "summary": "What the CNI plugin needs: masters, tiers, the default tier.",
                "responses": common(Map::from_iter([("200".into(), ok("The node as its files declare it.", &node))]))
            }},
            "/v1/endpoints": {"get": {
                "operationId": "listEndpoints",
                "summary": "Every registered endpoint.",
                "responses": common(Map::from_iter([(
                    "200".into(),
                    ok("The registry.", &json!({"type": "array", "items": record.clone()}))
                )]))
            }},
            "/v1/endpoints/{container_id}/{ifname}": {
                "parameters": params,
                "get": {
                    "operationId": "getEndpoint",
                    "summary": "One registered endpoint.",
                    "responses": common(Map::from_iter([
                        ("200".into(), ok("The endpoint.", &record)),
                        ("400".into(), bad_segment.clone()),
                        ("404".into(), error_answer("No such endpoint is registered.")),
                    ]))
                },
                "put": {
                    "operationId": "putEndpoint",
                    "summary": "Registers or replaces an endpoint; persisted before the answer.",
                    "requestBody": {
                        "required": true,
                        "content": {"application/json": {"schema": endpoint}}
                    },
                    "responses": common(Map::from_iter([
                        ("200".into(), ok("The endpoint as registered.", &record)),
                        ("400".into(), error_answer("A malformed container id or interface name, or a body that is not JSON.")),
                        ("413".into(), error_answer("The body is larger than the limit (64 KiB by default); the connection is closed.")),
                        ("415".into(), error_answer("The body is declared as something other than JSON.")),
                        ("422".into(), error_answer("JSON that is not a valid endpoint (an unknown field, a wrong type, a bad address), or an endpoint the node refuses.")),
                    ]))
                },
                "delete": {
                    "operationId": "deleteEndpoint",
                    "summary": "Removes an endpoint; also succeeds when it was not registered.",
                    "responses": common(Map::from_iter([
                        ("204".into(), json!({"description": "Removed, or was not registered."})),
                        ("400".into(), bad_segment),
                    ]))
                }
            },
            "/v1/reconcile": {"post": {
                "operationId": "reconcile",
                "summary": "Runs a reconcile now (coalesced with any already queued) and reports it.",
                "parameters": [{
                    "name": "force", "in": "query", "required": false,
                    "description": "Apply even steps that interrupt the interface carrying the node's default route.",
                    "schema": {"type": "boolean"}
                }, {
                    "name": "max_disruption", "in": "query", "required": false,
                    "description": "Refuse the pass's plan, applying nothing, when a step is more disruptive than this.",
                    "schema": {"type": "string", "enum": ["hitless", "link-flap", "vf-reset", "needs-reboot"]}
                }],
                "responses": common(Map::from_iter([
                    ("200".into(), ok("The reconcile that ran.", &reconcile)),
                    ("400".into(), error_answer("An unknown option.")),
                    ("503".into(), error_answer("The daemon cannot reconcile now.")),
                ]))
            }},
            "/v1/try": {"post": {
                "operationId": "tryFiles",
                "summary": "Puts the node files in force on trial: unless confirmed within the timeout, the previous generation comes back.",
                "parameters": [{
                    "name": "timeout", "in": "query", "required": false,
                    "description": "Seconds before the rollback (default 120).",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 3600}
                }],
                "responses": common(Map::from_iter([
                    ("200".into(), ok("The trial and the reconcile that put it in force.", &try_answer)),
                    ("400".into(), error_answer("A bad timeout.")),
                    ("409".into(), error_answer("A trial is already pending, or there is no earlier generation to go back to.")),
                    ("503".into(), error_answer("The daemon cannot reconcile now.")),
                ]))
            }},
            "/v1/confirm": {"post": {
                "operationId": "confirm",
                "summary": "Keeps the generation on trial.",
                "responses": common(Map::from_iter([
                    ("200".into(), ok("The trial, now confirmed.", &trial)),
                    ("409".into(), error_answer("No trial is pending.")),
                ]))
            }}
        },
        "components": {
            "parameters": {
                "container_id": {
                    "name": "container_id",
                    "in": "path",
                    "required": true,
                    "description": "The container id as the runtime gives it (`CNI_CONTAINERID`).",
                    "schema": {
                        "type": "string",
                        "pattern": "^[A-Za-z0-9_.-]{1,128}$",
                        "not": {"enum": [".", ".."]}
                    }
                },
                "ifname": {
                    "name": "ifname",
                    "in": "path",
                    "required": true,
                    "description": "The interface name in the pod (`CNI_IFNAME`): 1 to 15 bytes, percent-encoded where needed.",
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 15,
                        "pattern": "^[^/:\\s]+$",
                        "not": {"enum": [".", ".."]}
                    }
                }
            },
            "schemas": schemas
        }
    })
}

/// A `$ref` to `T`'s component schema (which the generator keeps).
fn component<T: JsonSchema>(generator: &mut schemars::SchemaGenerator) -> Json {
    generator.subschema_for::<T>().to_value()
}

/// The document rendered as the committed file's text.
pub fn openapi_text() -> String {
    let mut s = serde_json::to_string_pretty(&openapi_json()).expect("the document serializes");
    s.push('\n');
    s
}
