//! Render's Blueprint specification as data: every object's fields, types and required ones.
//!
//! The tables follow Render's published JSON Schema (`render.com/schema/render.yaml.json`): every
//! object's fields, the required ones, enumerations (plans, regions, runtimes…) and numeric ranges.
//! This file is data; `structure` walks the positioned YAML tree with it, and rules that need the
//! whole file (references, variables, budgets) live in `rules`.

use super::Severity;

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
///
/// Fields that several objects have (a service's name and type, its Git source, its Docker
/// settings, …) are declared once, as a group, and listed in `shared` by each object that has
/// them; `fields` holds the object's own.
pub(crate) struct Obj {
    pub fields: &'static [Field],
    pub shared: &'static [&'static [Field]],
    pub required: &'static [&'static str],
}

impl Obj {
    /// Every field: the shared groups in their order, then the object's own.
    pub(crate) fn all_fields(&self) -> impl Iterator<Item = &'static Field> + '_ {
        self.shared
            .iter()
            .flat_map(|group| group.iter())
            .chain(self.fields.iter())
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.all_fields().find(|f| f.name == name)
    }
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
pub(crate) const REGIONS: &[&str] = &["oregon", "ohio", "frankfurt", "singapore", "virginia"];
/// Runtimes of a service.
pub(crate) const RUNTIMES: &[&str] = &[
    "docker", "elixir", "go", "image", "node", "python", "ruby", "rust", "static",
];
/// Plans of a web service, private service or background worker.
pub(crate) const SERVER_PLANS: &[&str] = &[
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
pub(crate) const POSTGRES_PLANS: &[&str] = &[
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
pub(crate) const DATABASE_PROPERTIES: &[&str] = &[
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
    shared: &[],
    required: &[],
};
static REGISTRY_CREDENTIAL: Obj = Obj {
    fields: &[f("fromRegistryCreds", Ty::Obj(&NAME_ONLY))],
    shared: &[],
    required: &["fromRegistryCreds"],
};
static NAME_ONLY: Obj = Obj {
    fields: &[f("name", Ty::Str)],
    shared: &[],
    required: &["name"],
};
static IMAGE: Obj = Obj {
    fields: &[f("url", Ty::Str), f("creds", Ty::Obj(&REGISTRY_CREDENTIAL))],
    shared: &[],
    required: &["url"],
};
static DISK: Obj = Obj {
    fields: &[
        f("name", Ty::Str),
        f("mountPath", Ty::Str),
        f("sizeGB", int_min(1)),
    ],
    shared: &[],
    required: &["name", "mountPath"],
};
static IP_ALLOW: Obj = Obj {
    fields: &[f("source", Ty::Str), f("description", Ty::Str)],
    shared: &[],
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
    shared: &[],
    required: &[],
};
static SERVICE_PREVIEWS: Obj = Obj {
    fields: &[
        f("generation", Ty::Enum("generation", GENERATIONS)),
        f("plan", Ty::Enum("plan", SERVER_PLANS)),
        f("numInstances", int_min(1)),
    ],
    shared: &[],
    required: &[],
};
static STATIC_PREVIEWS: Obj = Obj {
    fields: &[f("generation", Ty::Enum("generation", GENERATIONS))],
    shared: &[],
    required: &[],
};
static ROOT_PREVIEWS: Obj = Obj {
    fields: &[
        f("generation", Ty::Enum("generation", GENERATIONS)),
        f("expireAfterDays", int_min(1)),
    ],
    shared: &[],
    required: &[],
};
static MAINTENANCE: Obj = Obj {
    fields: &[f("enabled", Ty::Bool), f("uri", Ty::Str)],
    shared: &[],
    required: &[],
};
static HEADER: Obj = Obj {
    fields: &[f("path", Ty::Str), f("name", Ty::Str), f("value", Ty::Str)],
    shared: &[],
    required: &["path", "name", "value"],
};
static ROUTE: Obj = Obj {
    fields: &[
        f("type", Ty::Enum("route type", &["redirect", "rewrite"])),
        f("source", Ty::Str),
        f("destination", Ty::Str),
    ],
    shared: &[],
    required: &["type", "source", "destination"],
};

// Fields that several service types share, each declared once.
const REGION_FIELD: Field = f("region", REGION);
const ENV_VARS: Field = f("envVars", Ty::Arr(&Ty::EnvVar));
const IP_ALLOW_LIST_FIELD: Field = f("ipAllowList", IP_ALLOW_LIST);
const AUTO_DEPLOY_TRIGGER: Field = f(
    "autoDeployTrigger",
    Ty::Enum("autoDeployTrigger", AUTO_DEPLOY_TRIGGERS),
);
/// Every service: what it is and what it is called.
static SERVICE_ID: [Field; 2] = [f("type", Ty::Str), f("name", Ty::Str)];
/// A service built from a Git repository.
static GIT: [Field; 4] = [
    f("repo", Ty::Str),
    f("branch", Ty::Str),
    f("rootDir", Ty::Str),
    f("buildFilter", Ty::Obj(&BUILD_FILTER)),
];
/// A service that runs a command after its build.
static BUILD_AND_START: [Field; 2] = [f("buildCommand", Ty::Str), f("startCommand", Ty::Str)];
/// A service built from a Dockerfile or pulled as an image.
static DOCKER: [Field; 5] = [
    f("dockerCommand", Ty::Str),
    f("dockerContext", Ty::Str),
    f("dockerfilePath", Ty::Str),
    f("registryCredential", Ty::Obj(&REGISTRY_CREDENTIAL)),
    f("image", Ty::Obj(&IMAGE)),
];
/// When and how a service deploys.
static DEPLOYS: [Field; 3] = [
    AUTO_DEPLOY,
    AUTO_DEPLOY_TRIGGER,
    f("preDeployCommand", Ty::Str),
];
/// A service reachable from the internet.
static PUBLIC: [Field; 4] = [
    f("domain", Ty::Str),
    f("domains", STRINGS),
    IP_ALLOW_LIST_FIELD,
    f(
        "renderSubdomainPolicy",
        Ty::Enum("renderSubdomainPolicy", ENABLED_DISABLED),
    ),
];

/// Web services, private services and background workers.
pub(crate) static SERVER: Obj = Obj {
    fields: &[
        REGION_FIELD,
        f("plan", Ty::Enum("plan", SERVER_PLANS)),
        f("runtime", RUNTIME),
        f("buildSource", Ty::Str),
        f("numInstances", int_min(1)),
        f("healthCheckPath", Ty::Str),
        f("scaling", Ty::Obj(&SCALING)),
        ENV_VARS,
        f("initialDeployHook", Ty::Str),
        f("disk", Ty::Obj(&DISK)),
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
    ],
    shared: &[
        &SERVICE_ID,
        &GIT,
        &DOCKER,
        &BUILD_AND_START,
        &DEPLOYS,
        &PUBLIC,
    ],
    required: &["type", "name", "runtime"],
};

/// Static sites (`type: web`, `runtime: static`).
pub(crate) static STATIC: Obj = Obj {
    fields: &[
        f("runtime", RUNTIME),
        f("buildCommand", Ty::Str),
        f("staticPublishPath", Ty::Str),
        f("previews", Ty::Obj(&STATIC_PREVIEWS)),
        PR_PREVIEWS,
        f("headers", Ty::Arr(&Ty::Obj(&HEADER))),
        f("routes", Ty::Arr(&Ty::Obj(&ROUTE))),
        ENV_VARS,
    ],
    shared: &[&SERVICE_ID, &GIT, &DEPLOYS, &PUBLIC],
    required: &["type", "name", "runtime"],
};

/// Cron jobs.
pub(crate) static CRON: Obj = Obj {
    fields: &[
        REGION_FIELD,
        f("plan", Ty::Enum("plan", CRON_PLANS)),
        f("runtime", RUNTIME),
        f("schedule", Ty::Schedule),
        ENV_VARS,
    ],
    shared: &[&SERVICE_ID, &GIT, &DOCKER, &BUILD_AND_START, &DEPLOYS],
    required: &["type", "name", "runtime", "schedule"],
};

/// Key Value (Redis-compatible) instances.
pub(crate) static KEY_VALUE: Obj = Obj {
    fields: &[
        REGION_FIELD,
        IP_ALLOW_LIST_FIELD,
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
    shared: &[&SERVICE_ID],
    required: &["type", "name", "ipAllowList"],
};

/// Workflows.
pub(crate) static WORKFLOW: Obj = Obj {
    fields: &[
        f("runtime", Ty::Enum("workflow runtime", &["node", "python"])),
        REGION_FIELD,
        AUTO_DEPLOY_TRIGGER,
        ENV_VARS,
    ],
    shared: &[&SERVICE_ID, &GIT, &BUILD_AND_START],
    required: &["type", "name", "runtime", "region", "startCommand"],
};

static HIGH_AVAILABILITY: Obj = Obj {
    fields: &[f("enabled", Ty::Bool)],
    shared: &[],
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
    shared: &[],
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
    shared: &[],
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
    shared: &[],
    required: &["name", "property"],
};
pub(crate) static ENV_FROM_DATABASE: Obj = Obj {
    fields: &[
        f("key", Ty::Str),
        f("fromDatabase", Ty::Obj(&FROM_DATABASE)),
    ],
    shared: &[],
    required: &["key", "fromDatabase"],
};
static FROM_SERVICE: Obj = Obj {
    fields: &[
        f("type", Ty::Enum("service type", SERVICE_REF_TYPES)),
        f("name", Ty::Str),
        f("property", Ty::Enum("service property", SERVICE_PROPERTIES)),
        f("envVarKey", Ty::Str),
    ],
    shared: &[],
    required: &["name", "type"],
};
pub(crate) static ENV_FROM_SERVICE: Obj = Obj {
    fields: &[f("key", Ty::Str), f("fromService", Ty::Obj(&FROM_SERVICE))],
    shared: &[],
    required: &["key", "fromService"],
};
pub(crate) static ENV_FROM_GROUP: Obj = Obj {
    fields: &[f("fromGroup", Ty::Str)],
    shared: &[],
    required: &["fromGroup"],
};

static ENV_VAR_GROUP: Obj = Obj {
    fields: &[f("name", Ty::Str), f("envVars", Ty::Arr(&Ty::GroupEnvVar))],
    shared: &[],
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
    shared: &[],
    required: &["repo", "runtime"],
};
pub(crate) static BUILD_SOURCE: Obj = Obj {
    fields: &[
        f("name", Ty::Str),
        f("git", Ty::Obj(&BUILD_SOURCE_GIT)),
        f("image", Ty::Obj(&IMAGE)),
    ],
    shared: &[],
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
                shared: &[],
                required: &[],
            }),
        ),
        f(
            "permissions",
            Ty::Obj(&Obj {
                fields: &[f("protection", Ty::Enum("protection", ENABLED_DISABLED))],
                shared: &[],
                required: &[],
            }),
        ),
        SERVICES,
        DATABASES,
        GROUPS,
    ],
    shared: &[],
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
    shared: &[],
    required: &["name"],
};
static UNGROUPED: Obj = Obj {
    fields: &[SERVICES, DATABASES, GROUPS, BUILD_SOURCES],
    shared: &[],
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
    shared: &[],
    required: &[],
};
