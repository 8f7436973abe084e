"""CustomResourceDefinitions and ValidatingAdmissionPolicies: pure logic.

* :mod:`.structural` — the CRD object itself: defaulting, validation (names, versions, structural
  schema, CEL rules compile), naming conditions, and the ``ResourceInfo`` each served version becomes.
* :mod:`.schema` — one structural schema applied to a custom object: pruning, defaulting, validation.
* :mod:`.celrules` — the Kubernetes CEL environment and ``x-kubernetes-validations`` evaluation.
* :mod:`.present` — printer columns (Tables), OpenAPI v3 models, ``Scale``.
* :mod:`.policy` — ValidatingAdmissionPolicy matching and evaluation.
"""
