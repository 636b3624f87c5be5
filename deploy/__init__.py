"""Deployment helpers of the Pulumi program: config validation, artifact builds, shared resources, the plan.

Nothing here runs inside a Lambda or the Glue job (except ``view_runner``, the deploy-time view DDL Lambda).
"""
