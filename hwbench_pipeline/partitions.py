"""Partitions: one dynamic partition per hardware target key (cpu-torch, cuda0-torch, …)."""

import dagster as dg

hardware_target_partitions = dg.DynamicPartitionsDefinition(name="hardware_targets")
