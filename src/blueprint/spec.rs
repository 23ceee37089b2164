//! Render's Blueprint specification as data, and the structural check of a document against it.
//!
//! The tables follow Render's published JSON Schema (`render.com/schema/render.yaml.json`): every
//! object's fields, the required ones, enumerations (plans, regions, runtimes…) and numeric ranges.
//! The checker walks the positioned YAML tree with them, so each finding points at the key or value
//! at fault. Rules that need the whole file (references, variables, budgets) live in `rules`.

use super::yaml::{Kind, Node, Scalar, shorten};
use super::{Finding, Severity};

/// The type of a field's value.
#[derive(Clone, Copy)]
pub(crate) enum Ty {
    Str,
    Bool,
    Int {
        min: i64,
        max: Option<i64>,
    },
    /// An environment variable's `value`: Render takes strings and numbers.
    StrOrNum,
    Enum(&'static str, &'static [&'static str]),
    Obj(&'static Obj),
    /// An object named by its `name` field in messages ("database `main`").
    Named(&'static str, &'static Obj),
    Arr(&'static Ty),
    Service,
    EnvVar,
    /// A variable of an environment group: plain values only.
    GroupEnvVar,
    /// `diskSizeGB`: 1 or a multiple of 5.
    DiskSize,
    /// A cron expression of five fields.
    Schedule,
}

/// One field of an object.
pub(crate) struct Field {
    pub name: &'static str,
    pub ty: Ty,
    /// A deprecated field: how serious, and what to use instead.
    pub deprecated: Option<(Severity, &'static str)>,
}

/// An object: its fields and the ones it requires.
pub(crate) struct Obj {
    pub fields: &'static [Field],
    pub required: &'static [&'static str],
}

const fn f(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        deprecated: None,
    }
}

const fn deprecated(
    name: &'static str,
    ty: Ty,
    severity: Severity,
    message: &'static str,
) -> Field {
    Field {
        name,
        ty,
        deprecated: Some((severity, message)),
    }
}

const fn int_min(min: i64) -> Ty {
    Ty::Int { min, max: None }
}

/// Regions Render documents.
pub const REGIONS: &[&str] = &["oregon", "ohio", "frankfurt", "singapore", "virginia"];
/// Runtimes of a service.
pub const RUNTIMES: &[&str] = &[
    "docker", "elixir", "go", "image", "node", "python", "ruby", "rust", "static",
];
/// Plans of a web service, private service or background worker.
pub const SERVER_PLANS: &[&str] = &[
    "free",
    "starter",
    "standard",
    "pro",
    "pro plus",
    "pro max",
    "pro ultra",
    "0.5c-512mb",
    "1c-2g",
    "2c-4g",
    "2c-8g",
    "2c-16g",
    "4c-8g",
    "4c-16g",
    "4c-32g",
    "8c-16g",
    "8c-32g",
    "8c-64g",
    "12c-24g",
    "12c-48g",
    "12c-96g",
];
const CRON_PLANS: &[&str] = &[
    "starter",
    "standard",
    "pro",
    "pro plus",
    "0.5c-512mb",
    "1c-2g",
    "2c-4g",
    "2c-8g",
    "2c-16g",
    "4c-8g",
    "4c-16g",
    "4c-32g",
    "8c-16g",
    "8c-32g",
    "8c-64g",
];
const KEY_VALUE_PLANS: &[&str] = &[
    "free",
    "starter",
    "standard",
    "pro",
    "pro plus",
    "pro max",
    "pro ultra",
    "256mb",
    "1g",
    "3g",
    "5g",
    "10g",
    "20g",
    "40g",
    "50g",
];
/// Plans of a Render Postgres database.
pub const POSTGRES_PLANS: &[&str] = &[
    "free",
    "starter",
    "standard",
    "pro",
    "pro plus",
    "basic-256mb",
    "basic-1gb",
    "basic-4gb",
    "pro-4gb",
    "pro-8gb",
    "pro-16gb",
    "pro-32gb",
    "pro-64gb",
    "pro-128gb",
    "pro-192gb",
    "pro-256gb",
    "pro-384gb",
    "pro-512gb",
    "accelerated-16gb",
    "accelerated-32gb",
    "accelerated-64gb",
    "accelerated-128gb",
    "accelerated-256gb",
    "accelerated-384gb",
    "accelerated-512gb",
    "accelerated-768gb",
    "accelerated-1024gb",
    "0.1c-256mb",
    "0.5c-1g",
    "1c-2g",
    "1c-4g",
    "2c-4g",
    "2c-8g",
    "2c-16g",
    "4c-16g",
    "4c-32g",
    "8c-32g",
    "8c-64g",
    "16c-64g",
    "16c-128g",
    "32c-128g",
    "32c-256g",
    "48c-192g",
    "48c-384g",
    "64c-256g",
    "64c-512g",
    "96c-384g",
    "96c-768g",
    "128c-512g",
    "128c-1024g",
];
/// The properties of a database that `fromDatabase` can read.
pub const DATABASE_PROPERTIES: &[&str] = &[
    "connectionString",
    "connectionPoolString",
    "host",
    "port",
    "user",
    "password",
    "database",
];
const SERVICE_PROPERTIES: &[&str] = &["host", "port", "hostport", "slug", "connectionString"];
const SERVICE_REF_TYPES: &[&str] = &[
    "web", "cron", "worker", "pserv", "workflow", "static", "dpg", "job", "redis", "keyvalue",
];
const AUTO_DEPLOY_TRIGGERS: &[&str] = &["off", "commit", "checksPass"];
const GENERATIONS: &[&str] = &["automatic", "manual", "off"];
const ENABLED_DISABLED: &[&str] = &["enabled", "disabled"];

const REGION: Ty = Ty::Enum("region", REGIONS);
const RUNTIME: Ty = Ty::Enum("runtime", RUNTIMES);
const STRINGS: Ty = Ty::Arr(&Ty::Str);
const AUTO_DEPLOY: Field = deprecated(
    "autoDeploy",
    Ty::Bool,
    Severity::Warning,
    "`autoDeploy` is deprecated; use `autoDeployTrigger` (`commit`, `checksPass` or `off`)",
);
const PR_PREVIEWS: Field = deprecated(
    "pullRequestPreviewsEnabled",
    Ty::Bool,
    Severity::Warning,
    "`pullRequestPreviewsEnabled` is deprecated; use `previews: {generation: automatic}`",
);

static BUILD_FILTER: Obj = Obj {
    fields: &[f("paths", STRINGS), f("ignoredPaths", STRINGS)],
    required: &[],
};
static REGISTRY_CREDENTIAL: Obj = Obj {
    fields: &[f("fromRegistryCreds", Ty::Obj(&NAME_ONLY))],
    required: &["fromRegistryCreds"],
};
static NAME_ONLY: Obj = Obj {
    fields: &[f("name", Ty::Str)],
    required: &["name"],
};
static IMAGE: Obj = Obj {
    fields: &[f("url", Ty::Str), f("creds", Ty::Obj(&REGISTRY_CREDENTIAL))],
    required: &["url"],
};
static DISK: Obj = Obj {
    fields: &[
        f("name", Ty::Str),
        f("mountPath", Ty::Str),
        f("sizeGB", int_min(1)),
    ],
    required: &["name", "mountPath"],
};
static IP_ALLOW: Obj = Obj {
    fields: &[f("source", Ty::Str), f("description", Ty::Str)],
    required: &["source"],
};
const IP_ALLOW_LIST: Ty = Ty::Arr(&Ty::Obj(&IP_ALLOW));
const PERCENT: Ty = Ty::Int {
    min: 1,
    max: Some(90),
};
static SCALING: Obj = Obj {
    fields: &[
        f("minInstances", int_min(1)),
        f("maxInstances", int_min(1)),
        f("targetMemoryPercent", PERCENT),
        f("targetCPUPercent", PERCENT),
    ],
    required: &[],
};
static SERVICE_PREVIEWS: Obj = Obj {
    fields: &[
        f("generation", Ty::Enum("generation", GENERATIONS)),
        f("plan", Ty::Enum("plan", SERVER_PLANS)),
        f("numInstances", int_min(1)),
    ],
    required: &[],
};
static STATIC_PREVIEWS: Obj = Obj {
    fields: &[f("generation", Ty::Enum("generation", GENERATIONS))],
    required: &[],
};
static ROOT_PREVIEWS: Obj = Obj {
    fields: &[
        f("generation", Ty::Enum("generation", GENERATIONS)),
        f("expireAfterDays", int_min(1)),
    ],
    required: &[],
};
static MAINTENANCE: Obj = Obj {
    fields: &[f("enabled", Ty::Bool), f("uri", Ty::Str)],
    required: &[],
};
static HEADER: Obj = Obj {
    fields: &[f("path", Ty::Str), f("name", Ty::Str), f("value", Ty::Str)],
    required: &["path", "name", "value"],
};
static ROUTE: Obj = Obj {
    fields: &[
        f("type", Ty::Enum("route type", &["redirect", "rewrite"])),
        f("source", Ty::Str),
        f("destination", Ty::Str),
    ],
    required: &["type", "source", "destination"],
};

/// Web services, private services and background workers.
pub(crate) static SERVER: Obj = Obj {
    fields: &[
        f("type", Ty::Str),
        f("name", Ty::Str),
        f("region", REGION),
        f("plan", Ty::Enum("plan", SERVER_PLANS)),
        f("runtime", RUNTIME),
        f("buildSource", Ty::Str),
        f("repo", Ty::Str),
        f("branch", Ty::Str),
        f("image", Ty::Obj(&IMAGE)),
        f("rootDir", Ty::Str),
        f("dockerCommand", Ty::Str),
        f("dockerContext", Ty::Str),
        f("dockerfilePath", Ty::Str),
        f("numInstances", int_min(1)),
        f("healthCheckPath", Ty::Str),
        f("scaling", Ty::Obj(&SCALING)),
        f("buildCommand", Ty::Str),
        f("startCommand", Ty::Str),
        f("preDeployCommand", Ty::Str),
        f("registryCredential", Ty::Obj(&REGISTRY_CREDENTIAL)),
        f("domain", Ty::Str),
        f("domains", STRINGS),
        f("envVars", Ty::Arr(&Ty::EnvVar)),
        AUTO_DEPLOY,
        f(
            "autoDeployTrigger",
            Ty::Enum("autoDeployTrigger", AUTO_DEPLOY_TRIGGERS),
        ),
        f("initialDeployHook", Ty::Str),
        f("disk", Ty::Obj(&DISK)),
        f("buildFilter", Ty::Obj(&BUILD_FILTER)),
        f("previews", Ty::Obj(&SERVICE_PREVIEWS)),
        PR_PREVIEWS,
        deprecated(
            "previewPlan",
            Ty::Enum("plan", SERVER_PLANS),
            Severity::Warning,
            "`previewPlan` is deprecated; use `previews: {plan: …}`",
        ),
        f("maintenanceMode", Ty::Obj(&MAINTENANCE)),
        f(
            "maxShutdownDelaySeconds",
            Ty::Int {
                min: 1,
                max: Some(300),
            },
        ),
        f("ipAllowList", IP_ALLOW_LIST),
        f(
            "renderSubdomainPolicy",
            Ty::Enum("renderSubdomainPolicy", ENABLED_DISABLED),
        ),
    ],
    required: &["type", "name", "runtime"],
};

/// Static sites (`type: web`, `runtime: static`).
pub(crate) static STATIC: Obj = Obj {
    fields: &[
        f("type", Ty::Str),
        f("name", Ty::Str),
        f("runtime", RUNTIME),
        f("buildCommand", Ty::Str),
        f("staticPublishPath", Ty::Str),
        f("previews", Ty::Obj(&STATIC_PREVIEWS)),
        PR_PREVIEWS,
        f("buildFilter", Ty::Obj(&BUILD_FILTER)),
        f("headers", Ty::Arr(&Ty::Obj(&HEADER))),
        f("routes", Ty::Arr(&Ty::Obj(&ROUTE))),
        f("envVars", Ty::Arr(&Ty::EnvVar)),
        f("rootDir", Ty::Str),
        f("repo", Ty::Str),
        f("branch", Ty::Str),
        f("domain", Ty::Str),
        f("domains", STRINGS),
        AUTO_DEPLOY,
        f(
            "autoDeployTrigger",
            Ty::Enum("autoDeployTrigger", AUTO_DEPLOY_TRIGGERS),
        ),
        f("preDeployCommand", Ty::Str),
        f("ipAllowList", IP_ALLOW_LIST),
        f(
            "renderSubdomainPolicy",
            Ty::Enum("renderSubdomainPolicy", ENABLED_DISABLED),
        ),
    ],
    required: &["type", "name", "runtime"],
};

/// Cron jobs.
pub(crate) static CRON: Obj = Obj {
    fields: &[
        f("type", Ty::Str),
        f("name", Ty::Str),
        f("region", REGION),
        f("plan", Ty::Enum("plan", CRON_PLANS)),
        f("runtime", RUNTIME),
        f("schedule", Ty::Schedule),
        f("buildCommand", Ty::Str),
        f("startCommand", Ty::Str),
        f("dockerCommand", Ty::Str),
        f("dockerfilePath", Ty::Str),
        f("dockerContext", Ty::Str),
        f("registryCredential", Ty::Obj(&REGISTRY_CREDENTIAL)),
        f("repo", Ty::Str),
        f("branch", Ty::Str),
        f("image", Ty::Obj(&IMAGE)),
        f("envVars", Ty::Arr(&Ty::EnvVar)),
        f("buildFilter", Ty::Obj(&BUILD_FILTER)),
        f("rootDir", Ty::Str),
        AUTO_DEPLOY,
        f(
            "autoDeployTrigger",
            Ty::Enum("autoDeployTrigger", AUTO_DEPLOY_TRIGGERS),
        ),
        f("preDeployCommand", Ty::Str),
    ],
    required: &["type", "name", "runtime", "schedule"],
};

/// Key Value (Redis-compatible) instances.
pub(crate) static KEY_VALUE: Obj = Obj {
    fields: &[
        f("type", Ty::Str),
        f("name", Ty::Str),
        f("region", REGION),
        f("ipAllowList", IP_ALLOW_LIST),
        f("plan", Ty::Enum("plan", KEY_VALUE_PLANS)),
        f("previewPlan", Ty::Enum("plan", KEY_VALUE_PLANS)),
        f(
            "maxmemoryPolicy",
            Ty::Enum(
                "maxmemoryPolicy",
                &[
                    "allkeys-lru",
                    "volatile-lru",
                    "allkeys-lfu",
                    "volatile-lfu",
                    "allkeys-random",
                    "volatile-random",
                    "volatile-ttl",
                    "noeviction",
                ],
            ),
        ),
        f(
            "persistenceMode",
            Ty::Enum("persistenceMode", &["journal-snapshot", "snapshot", "off"]),
        ),
    ],
    required: &["type", "name", "ipAllowList"],
};

/// Workflows.
pub(crate) static WORKFLOW: Obj = Obj {
    fields: &[
        f("type", Ty::Str),
        f("name", Ty::Str),
        f("runtime", Ty::Enum("workflow runtime", &["node", "python"])),
        f("region", REGION),
        f("repo", Ty::Str),
        f("branch", Ty::Str),
        f("buildCommand", Ty::Str),
        f("startCommand", Ty::Str),
        f("rootDir", Ty::Str),
        f("buildFilter", Ty::Obj(&BUILD_FILTER)),
        f(
            "autoDeployTrigger",
            Ty::Enum("autoDeployTrigger", AUTO_DEPLOY_TRIGGERS),
        ),
        f("envVars", Ty::Arr(&Ty::EnvVar)),
    ],
    required: &["type", "name", "runtime", "region", "startCommand"],
};

static HIGH_AVAILABILITY: Obj = Obj {
    fields: &[f("enabled", Ty::Bool)],
    required: &["enabled"],
};

static DATABASE: Obj = Obj {
    fields: &[
        f("name", Ty::Str),
        f("databaseName", Ty::Str),
        f("user", Ty::Str),
        f("region", REGION),
        f("plan", Ty::Enum("plan", POSTGRES_PLANS)),
        f("diskSizeGB", Ty::DiskSize),
        f("storageAutoscalingEnabled", Ty::Bool),
        f(
            "connectionPool",
            Ty::Enum("connectionPool", &["pgbouncer", "none"]),
        ),
        f("previewPlan", Ty::Enum("plan", POSTGRES_PLANS)),
        f("previewDiskSizeGB", Ty::DiskSize),
        f(
            "postgresMajorVersion",
            Ty::Enum(
                "postgresMajorVersion",
                &["10", "11", "12", "13", "14", "15", "16", "17", "18"],
            ),
        ),
        f("highAvailability", Ty::Obj(&HIGH_AVAILABILITY)),
        f("ipAllowList", IP_ALLOW_LIST),
        f(
            "readReplicas",
            Ty::Arr(&Ty::Named("read replica", &NAME_ONLY)),
        ),
    ],
    required: &["name"],
};

/// An environment variable with a value, a prompt (`sync: false`) or a generated value.
pub(crate) static ENV_VALUE: Obj = Obj {
    fields: &[
        f("key", Ty::Str),
        f("value", Ty::StrOrNum),
        f("generateValue", Ty::Bool),
        f("sync", Ty::Bool),
        f("previewValue", Ty::StrOrNum),
    ],
    required: &["key"],
};
static FROM_DATABASE: Obj = Obj {
    fields: &[
        f("name", Ty::Str),
        f(
            "property",
            Ty::Enum("database property", DATABASE_PROPERTIES),
        ),
    ],
    required: &["name", "property"],
};
static ENV_FROM_DATABASE: Obj = Obj {
    fields: &[
        f("key", Ty::Str),
        f("fromDatabase", Ty::Obj(&FROM_DATABASE)),
    ],
    required: &["key", "fromDatabase"],
};
static FROM_SERVICE: Obj = Obj {
    fields: &[
        f("type", Ty::Enum("service type", SERVICE_REF_TYPES)),
        f("name", Ty::Str),
        f("property", Ty::Enum("service property", SERVICE_PROPERTIES)),
        f("envVarKey", Ty::Str),
    ],
    required: &["name", "type"],
};
static ENV_FROM_SERVICE: Obj = Obj {
    fields: &[f("key", Ty::Str), f("fromService", Ty::Obj(&FROM_SERVICE))],
    required: &["key", "fromService"],
};
static ENV_FROM_GROUP: Obj = Obj {
    fields: &[f("fromGroup", Ty::Str)],
    required: &["fromGroup"],
};

static ENV_VAR_GROUP: Obj = Obj {
    fields: &[f("name", Ty::Str), f("envVars", Ty::Arr(&Ty::GroupEnvVar))],
    required: &["name", "envVars"],
};

static BUILD_SOURCE_GIT: Obj = Obj {
    fields: &[
        f("repo", Ty::Str),
        f("branch", Ty::Str),
        f(
            "runtime",
            Ty::Enum(
                "runtime",
                &["docker", "elixir", "go", "node", "python", "ruby", "rust"],
            ),
        ),
        f("buildCommand", Ty::Str),
        f("buildFilter", Ty::Obj(&BUILD_FILTER)),
        f("envVars", Ty::Arr(&Ty::EnvVar)),
        f("rootDir", Ty::Str),
        f("baseDir", Ty::Str),
        f("region", REGION),
        f("dockerfilePath", Ty::Str),
        f("registryCredential", Ty::Obj(&REGISTRY_CREDENTIAL)),
    ],
    required: &["repo", "runtime"],
};
static BUILD_SOURCE: Obj = Obj {
    fields: &[
        f("name", Ty::Str),
        f("git", Ty::Obj(&BUILD_SOURCE_GIT)),
        f("image", Ty::Obj(&IMAGE)),
    ],
    required: &["name"],
};

const SERVICES: Field = f("services", Ty::Arr(&Ty::Service));
// Statics, not temporaries: a promoted constant cannot point at a static.
static DATABASE_TY: Ty = Ty::Named("database", &DATABASE);
static GROUP_TY: Ty = Ty::Named("environment group", &ENV_VAR_GROUP);
static BUILD_SOURCE_TY: Ty = Ty::Named("build source", &BUILD_SOURCE);
const DATABASES: Field = f("databases", Ty::Arr(&DATABASE_TY));
const GROUPS: Field = f("envVarGroups", Ty::Arr(&GROUP_TY));
const BUILD_SOURCES: Field = f("buildSources", Ty::Arr(&BUILD_SOURCE_TY));

static ENVIRONMENT: Obj = Obj {
    fields: &[
        f("name", Ty::Str),
        f(
            "networking",
            Ty::Obj(&Obj {
                fields: &[f("isolation", Ty::Enum("isolation", ENABLED_DISABLED))],
                required: &[],
            }),
        ),
        f(
            "permissions",
            Ty::Obj(&Obj {
                fields: &[f("protection", Ty::Enum("protection", ENABLED_DISABLED))],
                required: &[],
            }),
        ),
        SERVICES,
        DATABASES,
        GROUPS,
    ],
    required: &["name"],
};
static PROJECT: Obj = Obj {
    fields: &[
        f("name", Ty::Str),
        f(
            "environments",
            Ty::Arr(&Ty::Named("environment", &ENVIRONMENT)),
        ),
        BUILD_SOURCES,
    ],
    required: &["name"],
};
static UNGROUPED: Obj = Obj {
    fields: &[SERVICES, DATABASES, GROUPS, BUILD_SOURCES],
    required: &[],
};

/// The top level of a Blueprint.
pub(crate) static ROOT: Obj = Obj {
    fields: &[
        SERVICES,
        DATABASES,
        GROUPS,
        f("previews", Ty::Obj(&ROOT_PREVIEWS)),
        deprecated(
            "previewsEnabled",
            Ty::Bool,
            Severity::Warning,
            "`previewsEnabled` is deprecated; use `previews: {generation: automatic}`",
        ),
        deprecated(
            "previewsExpireAfterDays",
            int_min(1),
            Severity::Warning,
            "`previewsExpireAfterDays` is deprecated; use `previews: {expireAfterDays: …}`",
        ),
        BUILD_SOURCES,
        f("projects", Ty::Arr(&Ty::Named("project", &PROJECT))),
        f("ungrouped", Ty::Obj(&UNGROUPED)),
        f("version", Ty::Enum("version", &["1"])),
    ],
    required: &[],
};

/// Walks a document with the tables above and collects findings.
pub(crate) struct Structure<'a> {
    pub findings: &'a mut Vec<Finding>,
}

impl Structure<'_> {
    fn push(&mut self, node_pos: super::yaml::Pos, severity: Severity, message: String) {
        self.findings.push(Finding {
            pos: node_pos,
            severity,
            message,
        });
    }

    fn error(&mut self, pos: super::yaml::Pos, message: String) {
        self.push(pos, Severity::Error, message);
    }

    /// Checks the top level.
    pub fn root(&mut self, root: &Node) {
        if root.as_map().is_none() {
            self.error(
                root.pos,
                format!(
                    "the top level of a Blueprint must be a mapping (`services:`, `databases:`, …), found {}",
                    root.describe()
                ),
            );
            return;
        }
        self.object(root, &ROOT, "the Blueprint", &[]);
    }

    /// Checks a mapping against an object's fields; `skip` lists keys the caller handles itself.
    fn object(&mut self, node: &Node, obj: &Obj, what: &str, skip: &[&str]) {
        let Some(entries) = node.as_map() else {
            self.error(
                node.pos,
                format!("{what} must be a mapping, found {}", node.describe()),
            );
            return;
        };
        for entry in entries {
            if skip.contains(&entry.key.as_str()) {
                continue;
            }
            let Some(field) = obj.fields.iter().find(|f| f.name == entry.key) else {
                let names: Vec<&str> = obj.fields.iter().map(|f| f.name).collect();
                let hint = suggest(&entry.key, &names)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.error(
                    entry.key_pos,
                    format!(
                        "unknown field `{}` in {what}: Render's Blueprint specification has no such field{hint}",
                        shorten(&entry.key)
                    ),
                );
                continue;
            };
            if let Some((severity, message)) = field.deprecated {
                self.push(entry.key_pos, severity, message.to_owned());
            }
            self.value(field.name, &entry.value, field.ty);
        }
        for required in obj.required {
            if node.get(required).is_none() && !skip.contains(required) {
                self.error(
                    node.pos,
                    format!("{what} has no `{required}`, which Render requires"),
                );
            }
        }
    }

    fn value(&mut self, name: &str, node: &Node, ty: Ty) {
        match ty {
            Ty::Str => {
                if node.as_str().is_none() {
                    self.error(
                        node.pos,
                        format!("`{name}` must be a string, found {}", node.describe()),
                    );
                }
            }
            Ty::Bool => {
                if node.as_bool().is_none() {
                    self.error(
                        node.pos,
                        format!("`{name}` must be `true` or `false`, found {}", node.describe()),
                    );
                }
            }
            Ty::Int { min, max } => self.int(name, node, min, max),
            Ty::StrOrNum => {
                if !matches!(
                    node.kind,
                    Kind::Scalar(_, Scalar::Str(_) | Scalar::Int(_) | Scalar::Float(_))
                ) {
                    self.error(
                        node.pos,
                        format!("`{name}` must be a string or a number, found {}", node.describe()),
                    );
                }
            }
            Ty::Enum(label, values) => self.enumeration(name, label, values, node),
            Ty::Obj(obj) => self.object(node, obj, &format!("`{name}`"), &[]),
            Ty::Named(label, obj) => {
                let what = match node.get("name").and_then(Node::as_str) {
                    Some(n) => format!("{label} `{}`", shorten(n)),
                    None => label.to_owned(),
                };
                self.object(node, obj, &what, &[]);
                if std::ptr::eq(obj, &BUILD_SOURCE)
                    && node.as_map().is_some()
                    && node.get("git").is_some() == node.get("image").is_some()
                {
                    self.error(node.pos, format!("{what} needs exactly one of `git` or `image`"));
                }
            }
            Ty::Arr(item) => match node.as_seq() {
                Some(items) => {
                    for i in items {
                        self.value(name, i, *item);
                    }
                }
                None => self.error(
                    node.pos,
                    format!("`{name}` must be a list, found {}", node.describe()),
                ),
            },
            Ty::Service => self.service(node),
            Ty::EnvVar => self.env_var(node),
            Ty::GroupEnvVar => {
                let what = env_var_label(node);
                self.object(node, &ENV_VALUE, &what, &[]);
            }
            Ty::DiskSize => {
                self.int(name, node, 1, None);
                if let Some(size) = node.as_int()
                    && size > 1
                    && size % 5 != 0
                {
                    self.error(
                        node.pos,
                        format!("`{name}` must be 1 or a multiple of 5 (found {size})"),
                    );
                }
            }
            Ty::Schedule => match node.as_str() {
                Some(s) if s.split_whitespace().count() == 5 => {}
                Some(s) => self.error(
                    node.pos,
                    format!(
                        "`{name}` must be a cron expression of five fields (minute hour day month weekday), found `{}`",
                        shorten(s)
                    ),
                ),
                None => self.error(
                    node.pos,
                    format!("`{name}` must be a string, found {}", node.describe()),
                ),
            },
        }
    }

    fn int(&mut self, name: &str, node: &Node, min: i64, max: Option<i64>) {
        let Some(value) = node.as_int() else {
            self.error(
                node.pos,
                format!("`{name}` must be an integer, found {}", node.describe()),
            );
            return;
        };
        match max {
            Some(max) if value < min || value > max => self.error(
                node.pos,
                format!("`{name}` must be between {min} and {max} (found {value})"),
            ),
            None if value < min => self.error(
                node.pos,
                format!("`{name}` must be at least {min} (found {value})"),
            ),
            _ => {}
        }
    }

    fn enumeration(&mut self, name: &str, label: &str, values: &[&str], node: &Node) {
        match node.as_str() {
            Some(v) if values.contains(&v) => {}
            Some(v) => {
                let hint = suggest(v, values)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                self.error(
                    node.pos,
                    format!(
                        "`{}` is not {} Render knows (expected {}){hint}",
                        shorten(v),
                        article(label),
                        one_of(values)
                    ),
                );
            }
            None => {
                let quote = node
                    .text()
                    .filter(|t| values.contains(t))
                    .map(|t| format!("; quote it: `{name}: \"{t}\"`"))
                    .unwrap_or_default();
                self.error(
                    node.pos,
                    format!(
                        "`{name}` must be a string ({}), found {}{quote}",
                        one_of(values),
                        node.describe()
                    ),
                );
            }
        }
    }

    fn service(&mut self, node: &Node) {
        if node.as_map().is_none() {
            self.error(
                node.pos,
                format!("a service must be a mapping, found {}", node.describe()),
            );
            return;
        }
        let name = node.get("name").and_then(Node::as_str);
        let named = |label: &str| match name {
            Some(n) => format!("{label} `{}`", shorten(n)),
            None => label.to_owned(),
        };
        let Some(type_node) = node.get("type") else {
            self.error(
                node.pos,
                format!(
                    "{} has no `type` (web, pserv, worker, cron, keyvalue or workflow)",
                    named("service")
                ),
            );
            return;
        };
        // The deprecated `env:` still tells which runtime was meant.
        let env = node.entry("env");
        let runtime = node
            .get("runtime")
            .or(env.map(|e| &e.value))
            .and_then(Node::as_str);
        let (obj, what): (&Obj, String) = match type_node.as_str() {
            Some("web") if runtime == Some("static") => (&STATIC, named("static site")),
            Some("web") => (&SERVER, named("web service")),
            Some("pserv") => (&SERVER, named("private service")),
            Some("worker") => (&SERVER, named("background worker")),
            Some("cron") => (&CRON, named("cron job")),
            Some("keyvalue") => (&KEY_VALUE, named("Key Value instance")),
            Some("redis") => {
                self.push(
                    type_node.pos,
                    Severity::Warning,
                    "`type: redis` is a deprecated alias; use `type: keyvalue`".into(),
                );
                (&KEY_VALUE, named("Key Value instance"))
            }
            Some("workflow") => (&WORKFLOW, named("workflow")),
            Some("static") => {
                self.error(
                    type_node.pos,
                    "`static` is not a service type; a static site is `type: web` with `runtime: static`".into(),
                );
                return;
            }
            Some(other) => {
                let types = ["web", "pserv", "worker", "cron", "keyvalue", "workflow"];
                let hint = suggest(other, &types)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                self.error(
                    type_node.pos,
                    format!(
                        "`{}` is not a service type Render knows (expected {}){hint}",
                        shorten(other),
                        one_of(&types)
                    ),
                );
                return;
            }
            None => {
                self.error(
                    type_node.pos,
                    format!("`type` must be a string, found {}", type_node.describe()),
                );
                return;
            }
        };
        let mut skip: Vec<&str> = Vec::new();
        if let Some(env) = env {
            skip.push("env");
            let replacement = match env.value.as_str() {
                Some(v) if RUNTIMES.contains(&v) => format!("`runtime: {v}`"),
                _ => "`runtime:`".to_owned(),
            };
            self.error(
                env.key_pos,
                format!(
                    "`env` is deprecated and not part of Render's current Blueprint specification; use {replacement} instead"
                ),
            );
            // The runtime is then missing too, but one finding says it all.
            if node.get("runtime").is_none() {
                skip.push("runtime");
            }
        }
        if node.get("buildSource").is_some() {
            skip.push("runtime");
        }
        self.object(node, obj, &what, &skip);
    }

    fn env_var(&mut self, node: &Node) {
        let what = env_var_label(node);
        let obj = if node.get("fromDatabase").is_some() {
            &ENV_FROM_DATABASE
        } else if node.get("fromService").is_some() {
            &ENV_FROM_SERVICE
        } else if node.get("fromGroup").is_some() {
            &ENV_FROM_GROUP
        } else {
            &ENV_VALUE
        };
        self.object(node, obj, &what, &[]);
    }
}

fn env_var_label(node: &Node) -> String {
    match node.get("key").and_then(Node::as_str) {
        Some(k) => format!("environment variable `{}`", shorten(k)),
        None => "environment variable".to_owned(),
    }
}

/// "a plan", "an environment group".
pub(crate) fn article(label: &str) -> String {
    let an = label.starts_with(['a', 'e', 'i', 'o', 'u', 'A', 'E', 'I', 'O', 'U']);
    format!("{} {label}", if an { "an" } else { "a" })
}

/// "one of a, b or c", shortened for long lists such as the 50 database plans.
fn one_of(values: &[&str]) -> String {
    const SHOWN: usize = 10;
    let quoted: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n if n > SHOWN => format!("one of {}, … ({n} values)", quoted[..SHOWN].join(", ")),
        n => format!("one of {} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

/// The closest known name, when one is close enough to be a typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    // Real Blueprints name a few dozen resources; past a few hundred, comparing every misspelt
    // reference with every name would make a huge generated file slow to check.
    const MAX_CANDIDATES: usize = 256;
    if candidates.len() > MAX_CANDIDATES || word.len() > 200 {
        return None;
    }
    let lower = word.to_lowercase();
    candidates
        .iter()
        .map(|c| (levenshtein(&lower, &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 5) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_gets_a_suggestion_and_a_different_word_does_not() {
        assert_eq!(
            suggest("healthcheckPath", &["healthCheckPath", "name"]),
            Some("healthCheckPath")
        );
        assert_eq!(suggest("orgeon", REGIONS), Some("oregon"));
        assert_eq!(suggest("kubernetes", REGIONS), None);
    }

    #[test]
    fn long_value_lists_are_shortened() {
        assert!(one_of(POSTGRES_PLANS).ends_with("… (50 values)"));
        assert_eq!(one_of(&["a", "b", "c"]), "one of `a`, `b` or `c`");
    }
}
