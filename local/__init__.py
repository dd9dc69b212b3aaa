"""The embedded default: real PostgreSQL on loopback + moto, running the product code unchanged.

Nothing in this package ships to AWS.
"""
