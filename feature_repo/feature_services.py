"""Feature services: one per declared teacher version. The student (served online) has none by design."""

from feast import FeatureService

from declarations import DECLARATIONS
from feature_views import VIEWS


def _service(name: str) -> FeatureService:
    decl = DECLARATIONS.services[name]
    projections = [
        VIEWS[view] if columns == DECLARATIONS.views[view].features else VIEWS[view][columns]
        for view, columns in DECLARATIONS.service_views(name)
    ]
    return FeatureService(
        name=name, features=projections, description=decl.description, owner=decl.owner, tags=decl.tags
    )


SERVICES = {name: _service(name) for name in DECLARATIONS.services}
globals().update(SERVICES)  # module-level names, as `feast apply` collects them
