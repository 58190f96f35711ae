from twisted.application.service import ServiceMaker

pxed_tftp = ServiceMaker("pxed-tftp", "pxed.tftp.tap",
                         "A fast TFTP server (uploads only with --upload-root).", "pxed-tftp")
