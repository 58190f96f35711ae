from twisted.application.service import ServiceMaker

pxed_tftp = ServiceMaker("pxed-tftp", "pxed.tftp.tap", "A fast read-only TFTP server.", "pxed-tftp")
