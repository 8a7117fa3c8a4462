//! Self-tests of the CRD validator (tests/common/crd.rs) over the CRDs vendored in tests/crds/:
//! hand-written manifests of every kind the mesh generator may emit must pass, and broken variants
//! of them (unknown field, wrong type, enum value, missing required field, unknown kind or version,
//! bad metadata, duplicate list keys, ...) must fail with the path and keyword named, so that the
//! validator cannot pass everything.

mod common;

use common::crd;
use serde_json::{json, Value};

/// One valid manifest of each kind, as the generator would write them.
const VALID: &str = r#"
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: llm-router
  namespace: istio-system
  labels:
    app.kubernetes.io/name: llm-router
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  url: oci://ghcr.io/example/llm-router:0.1.0
  sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  imagePullPolicy: IfNotPresent
  pluginName: llm-router
  phase: UNSPECIFIED_PHASE
  type: HTTP
  priority: 10
  failStrategy: FAIL_CLOSE
  pluginConfig:
    routing:
      default_model: openai/gpt-4o-mini
      providers:
        - name: openai
          base_url: https://api.openai.com
          api_key_env: OPENAI_API_KEY
  vmConfig:
    env:
      - name: OPENAI_API_KEY
        valueFrom: HOST
      - name: LLM_ROUTER_LOG
        value: info
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: llm-router-clusters
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  configPatches:
    - applyTo: CLUSTER
      match:
        context: GATEWAY
        cluster:
          service: api.openai.com
          portNumber: 443
      patch:
        operation: MERGE
        value:
          connect_timeout: 5s
          circuit_breakers:
            thresholds:
              - max_requests: 1000
    - applyTo: HTTP_FILTER
      match:
        context: GATEWAY
        listener:
          filterChain:
            filter:
              name: envoy.filters.network.http_connection_manager
              subFilter:
                name: envoy.filters.http.router
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.lua
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
            default_source_code:
              inline_string: "function envoy_on_request(h) end"
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: openai
  namespace: istio-system
spec:
  hosts:
    - api.openai.com
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
    - number: 80
      name: http
      protocol: HTTP
      targetPort: 443
    - number: 443
      name: https
      protocol: HTTPS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: openai
  namespace: istio-system
spec:
  host: api.openai.com
  trafficPolicy:
    connectionPool:
      tcp:
        connectTimeout: 5s
    portLevelSettings:
      - port:
          number: 80
        tls:
          mode: SIMPLE
          sni: api.openai.com
          insecureSkipVerify: null
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: llm
  namespace: istio-system
spec:
  hosts:
    - llm.example.com
  gateways:
    - llm-gateway
  http:
    - match:
        - uri:
            prefix: /v1
      route:
        - destination:
            host: api.openai.com
            port:
              number: 80
      timeout: 300s
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: llm-gateway
  namespace: istio-system
spec:
  selector:
    istio: ingressgateway
  servers:
    - port:
        number: 80
        name: http
        protocol: HTTP
      hosts:
        - llm.example.com
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyExtensionPolicy
metadata:
  name: llm-router
  namespace: envoy-gateway-system
spec:
  targetRefs:
    - group: gateway.networking.k8s.io
      kind: Gateway
      name: eg
  wasm:
    - name: llm-router
      rootID: llm_router
      code:
        type: Image
        image:
          url: ghcr.io/example/llm-router:0.1.0
          pullSecretRef:
            name: ghcr-pull
        pullPolicy: IfNotPresent
      config:
        routing:
          default_model: openai/gpt-4o-mini
      failOpen: false
      env:
        hostKeys:
          - OPENAI_API_KEY
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyPatchPolicy
metadata:
  name: llm-router-patches
  namespace: envoy-gateway-system
spec:
  targetRef:
    group: gateway.networking.k8s.io
    kind: Gateway
    name: eg
  type: JSONPatch
  priority: 0
  jsonPatches:
    - type: type.googleapis.com/envoy.config.cluster.v3.Cluster
      name: httproute/envoy-gateway-system/llm/rule/0
      operation:
        op: add
        path: /circuit_breakers
        value:
          thresholds:
            - max_requests: 1000
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: Backend
metadata:
  name: openai
  namespace: envoy-gateway-system
spec:
  endpoints:
    - fqdn:
        hostname: api.openai.com
        port: 443
  tls:
    sni: api.openai.com
    wellKnownCACertificates: System
    minVersion: "1.2"
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata:
  name: openai-retries
  namespace: envoy-gateway-system
spec:
  targetRefs:
    - group: gateway.networking.k8s.io
      kind: HTTPRoute
      name: llm
  connection:
    bufferLimit: 32Ki
  retry:
    numRetries: 3
    perRetry:
      timeout: 30s
      backOff:
        baseInterval: 100ms
        maxInterval: 2s
    retryOn:
      triggers:
        - connect-failure
        - retriable-status-codes
      httpStatusCodes:
        - 429
        - 503
  responseOverride:
    - match:
        statusCodes:
          - value: 503
      response:
        contentType: application/json
        body:
          inline: '{"error":{"message":"no provider available"}}'
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: eg
spec:
  controllerName: gateway.envoyproxy.io/gatewayclass-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: eg
  namespace: envoy-gateway-system
spec:
  gatewayClassName: eg
  listeners:
    - name: http
      protocol: HTTP
      port: 80
      allowedRoutes:
        namespaces:
          from: Same
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: llm
  namespace: envoy-gateway-system
spec:
  parentRefs:
    - name: eg
  hostnames:
    - llm.example.com
  rules:
    - matches:
        - path:
            type: PathPrefix
            value: /v1
      backendRefs:
        - group: gateway.envoyproxy.io
          kind: Backend
          name: openai
          port: 443
      timeouts:
        request: 300s
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata:
  name: allow-routes
  namespace: llm
spec:
  from:
    - group: gateway.networking.k8s.io
      kind: HTTPRoute
      namespace: envoy-gateway-system
  to:
    - group: gateway.envoyproxy.io
      kind: Backend
"#;

/// The kinds the mesh generator may emit (issue 12), as (group, kind).
const KINDS: &[(&str, &str)] = &[
    ("extensions.istio.io", "WasmPlugin"),
    ("networking.istio.io", "EnvoyFilter"),
    ("networking.istio.io", "ServiceEntry"),
    ("networking.istio.io", "DestinationRule"),
    ("networking.istio.io", "VirtualService"),
    ("networking.istio.io", "Gateway"),
    ("gateway.envoyproxy.io", "EnvoyExtensionPolicy"),
    ("gateway.envoyproxy.io", "EnvoyPatchPolicy"),
    ("gateway.envoyproxy.io", "Backend"),
    ("gateway.envoyproxy.io", "BackendTrafficPolicy"),
    ("gateway.networking.k8s.io", "GatewayClass"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "HTTPRoute"),
    ("gateway.networking.k8s.io", "ReferenceGrant"),
];

fn valid_manifests() -> Vec<Value> {
    crd::manifests(VALID).expect("VALID parses")
}

/// The valid manifest of `kind` in `group`.
fn base(group: &str, kind: &str) -> Value {
    valid_manifests()
        .into_iter()
        .find(|m| {
            m["kind"] == kind && m["apiVersion"].as_str().is_some_and(|v| v.starts_with(&format!("{group}/")))
        })
        .unwrap_or_else(|| panic!("no valid {kind}.{group} in VALID"))
}

/// `manifest` with the value at JSON pointer `ptr` set to `value` (the parent must exist).
fn with(mut manifest: Value, ptr: &str, value: Value) -> Value {
    let (parent, key) = ptr.rsplit_once('/').expect("pointer has a parent");
    match manifest.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}")) {
        Value::Object(map) => {
            map.insert(key.to_string(), value);
        }
        Value::Array(items) => {
            let i: usize = key.parse().expect("array index");
            if i == items.len() {
                items.push(value);
            } else {
                items[i] = value;
            }
        }
        other => panic!("{parent} is {other}, not a container"),
    }
    manifest
}

/// `manifest` without the field at JSON pointer `ptr` (which must exist).
fn without(mut manifest: Value, ptr: &str) -> Value {
    let (parent, key) = ptr.rsplit_once('/').expect("pointer has a parent");
    let map =
        manifest.pointer_mut(parent).and_then(Value::as_object_mut).unwrap_or_else(|| panic!("no {parent}"));
    assert!(map.remove(key).is_some(), "nothing at {ptr}");
    manifest
}

/// Asserts `manifest` fails, with every `needle` in the error message.
#[track_caller]
fn assert_invalid(manifest: &Value, needles: &[&str]) {
    match crd::validate(manifest) {
        Ok(()) => panic!("expected a violation ({needles:?}) but it validates:\n{manifest:#}"),
        Err(e) => {
            for needle in needles {
                assert!(e.contains(needle), "error lacks {needle:?}:\n{e}");
            }
        }
    }
}

#[test]
fn every_vendored_crd_loads_and_compiles() {
    let kinds = crd::known_kinds();
    for (group, kind) in KINDS {
        assert!(
            kinds.iter().any(|(g, k, versions)| g == group && k == kind && !versions.is_empty()),
            "{kind}.{group} is not vendored in tests/crds: {kinds:?}"
        );
    }
    let n = crd::compile_all().unwrap_or_else(|e| panic!("{e}"));
    assert!(n >= KINDS.len(), "compiled only {n} schemas");
}

#[test]
fn hand_written_manifests_of_every_kind_pass() {
    let manifests = valid_manifests();
    assert_eq!(manifests.len(), KINDS.len());
    for (group, kind) in KINDS {
        let m = base(group, kind);
        crd::assert_valid(&m);
    }
    assert_eq!(crd::validate_all(VALID), Ok(KINDS.len()));
}

#[test]
fn every_served_version_of_istio_networking_is_accepted() {
    for version in ["v1alpha3", "v1beta1", "v1"] {
        let m = with(
            base("networking.istio.io", "ServiceEntry"),
            "/apiVersion",
            json!(format!("networking.istio.io/{version}")),
        );
        crd::assert_valid(&m);
    }
}

#[test]
fn unknown_fields_are_rejected_where_kubernetes_would_prune_them() {
    let wasm = base("extensions.istio.io", "WasmPlugin");
    assert_invalid(
        &with(wasm.clone(), "/spec/urll", json!("oci://x")),
        &["WasmPlugin/llm-router", "at /spec/urll", "unknown field"],
    );
    assert_invalid(
        &with(wasm.clone(), "/spec/vmConfig/envv", json!([])),
        &["at /spec/vmConfig/envv", "unknown field"],
    );
    assert_invalid(
        &with(wasm.clone(), "/spec/vmConfig/env/0/valueFORM", json!("HOST")),
        &["at /spec/vmConfig/env/0/valueFORM"],
    );
    assert_invalid(&with(wasm.clone(), "/extra", json!(1)), &["at /extra", "unknown field"]);
    // ...but not under x-kubernetes-preserve-unknown-fields.
    crd::assert_valid(&with(wasm, "/spec/pluginConfig/anything", json!({"goes": ["here", 1, true]})));

    let route = base("gateway.networking.k8s.io", "HTTPRoute");
    assert_invalid(
        &with(route, "/spec/rules/0/matches/0/path/tpye", json!("Exact")),
        &["HTTPRoute/llm", "at /spec/rules/0/matches/0/path/tpye", "unknown field"],
    );
    let filter = base("networking.istio.io", "EnvoyFilter");
    crd::assert_valid(&with(filter.clone(), "/spec/configPatches/0/patch/value/any_envoy_field", json!(1)));
    assert_invalid(
        &with(filter, "/spec/configPatches/0/patch/valeu", json!({})),
        &["at /spec/configPatches/0/patch/valeu"],
    );
    let policy = base("gateway.envoyproxy.io", "EnvoyExtensionPolicy");
    crd::assert_valid(&with(policy.clone(), "/spec/wasm/0/config/free_form", json!(1)));
    assert_invalid(
        &with(policy, "/spec/wasm/0/env/hostkeys", json!(["X"])),
        &["at /spec/wasm/0/env/hostkeys"],
    );
}

#[test]
fn wrong_types_are_rejected() {
    let wasm = base("extensions.istio.io", "WasmPlugin");
    assert_invalid(
        &with(wasm.clone(), "/spec/priority", json!("10")),
        &["at /spec/priority", "keyword: type"],
    );
    assert_invalid(
        &with(wasm.clone(), "/spec/vmConfig/env", json!({"name": "X"})),
        &["at /spec/vmConfig/env", "keyword: type"],
    );
    assert_invalid(
        &with(wasm, "/spec/pluginConfig", json!("a string")),
        &["at /spec/pluginConfig", "keyword: type"],
    );
    // `minVersion: 1.2` unquoted in YAML is a number.
    let backend = base("gateway.envoyproxy.io", "Backend");
    assert_invalid(
        &with(backend, "/spec/tls/minVersion", json!(1.2)),
        &["Backend/openai", "at /spec/tls/minVersion"],
    );
    let gateway = base("gateway.networking.k8s.io", "Gateway");
    assert_invalid(
        &with(gateway, "/spec/listeners/0/port", json!("80")),
        &["at /spec/listeners/0/port", "keyword: type"],
    );
    let epp = base("gateway.envoyproxy.io", "EnvoyPatchPolicy");
    assert_invalid(&with(epp, "/spec/jsonPatches", json!({})), &["at /spec/jsonPatches", "keyword: type"]);
}

#[test]
fn enum_values_outside_the_schema_are_rejected() {
    let wasm = base("extensions.istio.io", "WasmPlugin");
    assert_invalid(
        &with(wasm.clone(), "/spec/failStrategy", json!("FAIL_SOMETIMES")),
        &["at /spec/failStrategy", "keyword: enum"],
    );
    assert_invalid(
        &with(wasm, "/spec/vmConfig/env/0/valueFrom", json!("ENV")),
        &["at /spec/vmConfig/env/0/valueFrom", "keyword: enum"],
    );
    let filter = base("networking.istio.io", "EnvoyFilter");
    assert_invalid(
        &with(filter.clone(), "/spec/configPatches/1/applyTo", json!("HTTP_FILTERS")),
        &["at /spec/configPatches/1/applyTo", "keyword: enum"],
    );
    assert_invalid(
        &with(filter, "/spec/configPatches/0/patch/operation", json!("UPSERT")),
        &["at /spec/configPatches/0/patch/operation", "keyword: enum"],
    );
    let dr = base("networking.istio.io", "DestinationRule");
    assert_invalid(
        &with(dr, "/spec/trafficPolicy/portLevelSettings/0/tls/mode", json!("TLS")),
        &["tls/mode", "keyword: enum"],
    );
    let epp = base("gateway.envoyproxy.io", "EnvoyPatchPolicy");
    assert_invalid(
        &with(epp.clone(), "/spec/type", json!("MergePatch")),
        &["at /spec/type", "keyword: enum"],
    );
    assert_invalid(
        &with(epp, "/spec/jsonPatches/0/operation/op", json!("merge")),
        &["at /spec/jsonPatches/0/operation/op", "keyword: enum"],
    );
    let eep = base("gateway.envoyproxy.io", "EnvoyExtensionPolicy");
    assert_invalid(
        &with(eep, "/spec/wasm/0/code/type", json!("OCI")),
        &["at /spec/wasm/0/code/type", "enum"],
    );
    let btp = base("gateway.envoyproxy.io", "BackendTrafficPolicy");
    assert_invalid(
        &with(btp, "/spec/retry/retryOn/triggers/0", json!("5xxx")),
        &["at /spec/retry/retryOn/triggers/0", "keyword: enum"],
    );
}

#[test]
fn missing_required_fields_are_rejected() {
    let wasm = base("extensions.istio.io", "WasmPlugin");
    assert_invalid(&without(wasm.clone(), "/spec/url"), &["at /spec", "url", "keyword: required"]);
    assert_invalid(
        &without(wasm, "/spec/vmConfig/env/0/name"),
        &["at /spec/vmConfig/env/0", "keyword: required"],
    );
    let se = base("networking.istio.io", "ServiceEntry");
    assert_invalid(&without(se.clone(), "/spec/hosts"), &["ServiceEntry/openai", "keyword: required"]);
    assert_invalid(&without(se, "/spec"), &["at /", "spec", "keyword: required"]);
    let gateway = base("gateway.networking.k8s.io", "Gateway");
    assert_invalid(
        &without(gateway, "/spec/listeners/0/port"),
        &["at /spec/listeners/0", "keyword: required"],
    );
    let epp = base("gateway.envoyproxy.io", "EnvoyPatchPolicy");
    assert_invalid(&without(epp, "/spec/targetRef"), &["targetRef", "keyword: required"]);
    let backend = base("gateway.envoyproxy.io", "Backend");
    assert_invalid(
        &without(backend, "/spec/endpoints/0/fqdn/port"),
        &["at /spec/endpoints/0/fqdn", "keyword: required"],
    );
}

#[test]
fn patterns_bounds_and_formats_are_checked() {
    let backend = base("gateway.envoyproxy.io", "Backend");
    assert_invalid(
        &with(backend.clone(), "/spec/endpoints/0/fqdn/hostname", json!("API.openai.com")),
        &["hostname", "keyword: pattern"],
    );
    assert_invalid(
        &with(backend, "/spec/endpoints/0/fqdn/port", json!(70000)),
        &["port", "keyword: maximum"],
    );
    let wasm = base("extensions.istio.io", "WasmPlugin");
    assert_invalid(
        &with(wasm.clone(), "/spec/sha256", json!("not-hex")),
        &["at /spec/sha256", "keyword: pattern"],
    );
    assert_invalid(&with(wasm, "/spec/url", json!("")), &["at /spec/url", "keyword: minLength"]);
    // format int32: out of range.
    let epp = base("gateway.envoyproxy.io", "EnvoyPatchPolicy");
    assert_invalid(
        &with(epp, "/spec/priority", json!(2_147_483_648_i64)),
        &["at /spec/priority", "int32", "keyword: format"],
    );
    // format byte: base64.
    let btp = base("gateway.envoyproxy.io", "BackendTrafficPolicy");
    let health = |binary: &str| {
        with(
            btp.clone(),
            "/spec/healthCheck",
            json!({"active": {"type": "HTTP", "http": {"path": "/health", "expectedResponse": {"type": "Binary", "binary": binary}}}}),
        )
    };
    crd::assert_valid(&health("aGVhbHRoeQ=="));
    assert_invalid(&health("not base64!"), &["binary", "keyword: format"]);
    // x-kubernetes-int-or-string: an integer or a string (which then has a pattern), nothing else.
    crd::assert_valid(&with(btp.clone(), "/spec/connection/bufferLimit", json!(32768)));
    assert_invalid(
        &with(btp.clone(), "/spec/connection/bufferLimit", json!(true)),
        &["at /spec/connection/bufferLimit"],
    );
    assert_invalid(
        &with(btp.clone(), "/spec/connection/bufferLimit", json!("32 KB")),
        &["at /spec/connection/bufferLimit", "pattern"],
    );
    // A Gateway API duration.
    assert_invalid(
        &with(btp, "/spec/retry/perRetry/timeout", json!("30 seconds")),
        &["at /spec/retry/perRetry/timeout", "keyword: pattern"],
    );
}

#[test]
fn nullable_fields_take_null_and_others_do_not() {
    let wasm = base("extensions.istio.io", "WasmPlugin");
    crd::assert_valid(&with(wasm.clone(), "/spec/priority", Value::Null)); // nullable: true
    assert_invalid(&with(wasm, "/spec/failStrategy", Value::Null), &["at /spec/failStrategy"]);
}

#[test]
fn list_types_set_and_map_reject_duplicates() {
    let wasm = base("extensions.istio.io", "WasmPlugin");
    let dup = with(wasm, "/spec/vmConfig/env/2", json!({"name": "OPENAI_API_KEY", "value": "x"}));
    assert_invalid(&dup, &["at /spec/vmConfig/env/2", "x-kubernetes-list-map-keys"]);
    let btp = base("gateway.envoyproxy.io", "BackendTrafficPolicy");
    let remove = |headers: Value| {
        with(btp.clone(), "/spec/responseOverride/0/response/header", json!({"remove": headers}))
    };
    crd::assert_valid(&remove(json!(["x-a", "x-b"])));
    assert_invalid(
        &remove(json!(["x-a", "x-a"])),
        &["at /spec/responseOverride/0/response/header/remove/1", "x-kubernetes-list-type"],
    );
}

#[test]
fn defaults_are_applied_before_validation() {
    // statusCodes[].type is required and defaults to Value; body.type too, defaulting to Inline.
    let btp = base("gateway.envoyproxy.io", "BackendTrafficPolicy");
    assert!(btp.pointer("/spec/responseOverride/0/match/statusCodes/0/type").is_none());
    crd::assert_valid(&btp);
    // A default never hides a wrong value that is present.
    assert_invalid(
        &with(btp, "/spec/responseOverride/0/match/statusCodes/0/type", json!("Values")),
        &["at /spec/responseOverride/0/match/statusCodes/0/type", "enum"],
    );
}

#[test]
fn unknown_kinds_groups_and_versions_are_rejected() {
    let wasm = base("extensions.istio.io", "WasmPlugin");
    assert_invalid(
        &with(wasm.clone(), "/kind", json!("WasmPlugins")),
        &["no kind \"WasmPlugins\"", "WasmPlugin"],
    );
    assert_invalid(
        &with(wasm.clone(), "/apiVersion", json!("extensions.istio.io/v1")),
        &["no version \"v1\"", "v1alpha1"],
    );
    assert_invalid(
        &with(wasm.clone(), "/apiVersion", json!("extension.istio.io/v1alpha1")),
        &["no vendored CRD for group"],
    );
    assert_invalid(&with(wasm.clone(), "/apiVersion", json!("v1")), &["core Kubernetes group"]);
    assert_invalid(&without(wasm.clone(), "/apiVersion"), &["apiVersion"]);
    assert_invalid(&without(wasm, "/kind"), &["kind"]);
    // Istio's Gateway is not Gateway API's, and vice versa.
    let gw = base("gateway.networking.k8s.io", "Gateway");
    assert_invalid(
        &with(gw, "/apiVersion", json!("networking.istio.io/v1")),
        &["Gateway/eg", "unknown field"],
    );
    let route = base("gateway.networking.k8s.io", "HTTPRoute");
    assert_invalid(
        &with(route, "/apiVersion", json!("gateway.networking.k8s.io/v1alpha2")),
        &["no version \"v1alpha2\""],
    );
}

#[test]
fn metadata_is_checked() {
    let wasm = base("extensions.istio.io", "WasmPlugin");
    assert_invalid(
        &without(wasm.clone(), "/metadata/name"),
        &["WasmPlugin/<no name>", "at /metadata/name", "required"],
    );
    assert_invalid(&without(wasm.clone(), "/metadata"), &["at /metadata", "required"]);
    assert_invalid(
        &with(wasm.clone(), "/metadata/name", json!("LLM_Router")),
        &["at /metadata/name", "DNS-1123 subdomain"],
    );
    assert_invalid(&with(wasm.clone(), "/metadata/name", json!("a".repeat(254))), &["DNS-1123 subdomain"]);
    crd::assert_valid(&with(wasm.clone(), "/metadata/name", json!("llm-router.v1")));
    assert_invalid(
        &with(wasm.clone(), "/metadata/namespace", json!("istio.system")),
        &["at /metadata/namespace", "DNS-1123 label"],
    );
    assert_invalid(
        &with(wasm.clone(), "/metadata/nmae", json!("x")),
        &["at /metadata/nmae", "unknown field"],
    );
    assert_invalid(
        &with(wasm.clone(), "/metadata/labels/app", json!("not a label value")),
        &["at /metadata/labels/app", "label value"],
    );
    assert_invalid(
        &with(wasm.clone(), "/metadata/labels/bad key", json!("x")),
        &["at /metadata/labels/bad key", "qualified name"],
    );
    assert_invalid(
        &with(wasm.clone(), "/metadata/labels/n", json!(1)),
        &["at /metadata/labels/n", "not a string"],
    );
    crd::assert_valid(&with(wasm, "/metadata/annotations", json!({"example.com/note": "any text at all"})));
    // GatewayClass is cluster-scoped.
    let class = base("gateway.networking.k8s.io", "GatewayClass");
    assert_invalid(
        &with(class, "/metadata/namespace", json!("default")),
        &["GatewayClass/eg", "cluster-scoped"],
    );
}

#[test]
fn validate_all_reports_every_broken_document() {
    assert_eq!(crd::validate_all(""), Ok(0));
    assert_eq!(crd::validate_all("---\n# only a comment\n---\n"), Ok(0));
    let broken = VALID.replace("failStrategy: FAIL_CLOSE", "failStrategy: FAIL_SOMETIMES").replace(
        "controllerName: gateway.envoyproxy.io/gatewayclass-controller",
        "controllerName: gateway.envoyproxy.io/gatewayclass-controller\n  extra: 1",
    );
    let err = crd::validate_all(&broken).expect_err("two broken documents");
    assert!(err.contains("manifest #1: WasmPlugin/llm-router"), "{err}");
    assert!(err.contains("GatewayClass/eg") && err.contains("at /spec/extra"), "{err}");
    assert_eq!(err.matches("manifest #").count(), 2, "{err}");
    // A duplicate key is a YAML error, not a silent overwrite.
    let dup = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: eg\n  name: other\nspec:\n  controllerName: a.b/c\n";
    assert!(crd::validate_all(dup).expect_err("duplicate key").contains("duplicate"));
    // A v1 List is expanded.
    let list = json!({"apiVersion": "v1", "kind": "List", "items": valid_manifests()});
    let list_yaml = serde_norway::to_string(&list).expect("YAML");
    assert_eq!(crd::validate_all(&list_yaml), Ok(KINDS.len()));
}

#[test]
fn unevaluated_cel_rules_are_listed_for_the_fields_present() {
    let wasm = base("extensions.istio.io", "WasmPlugin");
    let rules = crd::unevaluated_rules(&wasm);
    let has = |rules: &[String], needle: &str| rules.iter().any(|r| r.contains(needle));
    assert!(rules.iter().all(|r| r.starts_with("WasmPlugin/llm-router: at /")), "{rules:#?}");
    // The spec-level "at most one of selector, targetRef, targetRefs", the url scheme, the env rule (per entry).
    assert!(has(&rules, "at /spec: ") && has(&rules, "has(self.targetRefs)"), "{rules:#?}");
    assert!(has(&rules, "at /spec/url: "), "{rules:#?}");
    assert!(
        has(&rules, "at /spec/vmConfig/env/0: ") && has(&rules, "at /spec/vmConfig/env/1: "),
        "{rules:#?}"
    );
    assert!(has(&rules, "at /spec/selector/matchLabels/istio: "), "{rules:#?}");
    // Nothing for fields that are absent.
    assert!(!has(&rules, "/spec/targetRef"), "{rules:#?}");
    // More fields, more rules.
    let with_ref =
        with(wasm.clone(), "/spec/targetRefs", json!([{"kind": "Gateway", "name": "x", "namespace": ""}]));
    assert!(has(&crd::unevaluated_rules(&with_ref), "at /spec/targetRefs/0/namespace: cross namespace"));
    // Defaults count as present: EnvoyExtensionPolicy pullSecretRef.kind defaults to Secret, whose rule is listed.
    let eep = base("gateway.envoyproxy.io", "EnvoyExtensionPolicy");
    assert!(has(&crd::unevaluated_rules(&eep), "at /spec/wasm/0/code/image/pullSecretRef: "));
    // No CRD, no rules.
    assert!(crd::unevaluated_rules(&with(wasm, "/kind", json!("Nope"))).is_empty());
    // Every valid manifest has some (the count is what a README can quote).
    let all = crd::unevaluated_rules_all(VALID).expect("parses");
    for (group, kind) in KINDS {
        let n = all.iter().filter(|r| r.starts_with(&format!("{kind}/"))).count();
        eprintln!("{kind}.{group}: {n} CEL rule(s) not evaluated");
    }
    assert!(all.len() > KINDS.len());
}

#[test]
fn yaml_1_1_booleans_that_kubectl_would_read_as_booleans_are_flagged() {
    // serde_norway writes these strings unquoted; kubectl's YAML 1.1 parser reads them as booleans.
    let written =
        serde_norway::to_string(&json!({"a": "on", "b": ["yes", "Off"], "c": "true", "d": "online"}))
            .expect("YAML");
    let found = crd::yaml11_ambiguities(&written);
    assert_eq!(found.len(), 3, "{written}\n{found:#?}");
    assert!(
        found.iter().any(|f| f.contains("`on`")) && found.iter().any(|f| f.contains("`yes`")),
        "{found:#?}"
    );
    // Quoted, inside a block scalar, in a comment, or as part of a longer scalar: fine.
    let fine = "a: 'on'\nb: \"yes\"\nc: |\n  on\n  - yes\nd: x # on\ne: on-demand\nf:\n- 'n'\n";
    assert_eq!(crd::yaml11_ambiguities(fine), Vec::<String>::new());
    let keys = "y: 1\n'n': 2\n";
    assert_eq!(crd::yaml11_ambiguities(keys).len(), 1);
    // validate_all reports them with the line.
    let yaml = VALID.replace("value: info", "value: on");
    let err = crd::validate_all(&yaml).expect_err("a plain `on`");
    assert!(err.contains("plain `on` is a boolean to kubectl"), "{err}");
}
