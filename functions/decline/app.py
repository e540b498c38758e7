"""GET and POST /v1/decline/{token}: the decline link of the approval email (GET shows, POST decides)."""

from __future__ import annotations

from mangum import Mangum

from shared.approvals.links import make_router
from shared.http.app import create_app
from shared.http.health import router as health_router

router = make_router("decline")

app = create_app(router, health_router, title="AgentPay decline link")
handler = Mangum(app, lifespan="off")
