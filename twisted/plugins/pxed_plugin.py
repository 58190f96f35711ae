from twisted.application.service import ServiceMaker

pxed = ServiceMaker("pxed", "pxed.tap", "A network boot server (ProxyDHCP, PXE, TFTP, HTTP).",
                    "pxed")
