"""The package version, in one low module: whatever records it (model files, env.json, the report) imports it from
here instead of climbing to the package root, which pulls in the public API."""

VERSION = "0.1.0"
