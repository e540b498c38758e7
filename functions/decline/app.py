"""GET and POST /v1/decline/{token}: the decline link of the approval email (GET shows, POST decides)."""

from __future__ import annotations

from mangum import Mangum

from shared.approval_links import make_router
from shared.health import router as health_router
from shared.web import create_app

router = make_router("decline")

app = create_app(router, health_router, title="AgentPay decline link")
handler = Mangum(app, lifespan="off")
