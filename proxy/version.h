/* version.h — the one version string: `pgfunnel --version` and SHOW VERSION print it. */
#ifndef PGFUNNEL_VERSION_H
#define PGFUNNEL_VERSION_H
#define PGFUNNEL_VERSION        "0.1.0"
#define PGFUNNEL_VERSION_STRING "pgfunnel " PGFUNNEL_VERSION
#endif
